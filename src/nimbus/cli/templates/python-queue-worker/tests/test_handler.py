import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import handler  # noqa: E402


def test_only_failed_messages_are_reported():
    event = {"Records": [{"messageId": "1", "body": json.dumps({"id": 1})},
                         {"messageId": "2", "body": "not json"},
                         {"messageId": "3", "body": json.dumps({"no": "id"})}]}
    assert handler.consume(event, None) == {"batchItemFailures": [{"itemIdentifier": "2"},
                                                                  {"itemIdentifier": "3"}]}

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import handler  # noqa: E402


def test_run_reports_the_task():
    result = handler.run({"task": "cleanup"}, None)
    assert result["task"] == "cleanup" and result["ranAt"]

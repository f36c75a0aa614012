"""A queue worker: processes each message, reports the ones that failed."""

import json


def consume(event, context):
    failures = []
    for record in event.get("Records", []):
        try:
            print("job", json.loads(record["body"]))
        except ValueError:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}

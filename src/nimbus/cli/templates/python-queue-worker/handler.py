"""An SQS worker: processes each message and reports only the failed ones, so only they are retried."""

import json


def process(job):
    if "id" not in job:
        raise ValueError("a job needs an id")
    print(f"processed job {job['id']}")


def consume(event, context):
    failures = []
    for record in event.get("Records", []):
        try:
            process(json.loads(record["body"]))
        except ValueError:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}

"""A scheduled job: logs the time it ran."""

import datetime


def run(event, context):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    print(f"{context.function_name} ran at {now} with {event}")
    return {"ranAt": now}

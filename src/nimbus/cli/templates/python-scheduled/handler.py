"""A scheduled job: the Scheduler sends the `input` of the schedule as the event."""

import datetime


def run(event, context):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    print(f"running {event.get('task', 'job')} at {now}")
    return {"task": event.get("task", "job"), "ranAt": now}

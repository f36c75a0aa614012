"""Event sources that turn outside happenings into invocations (DESIGN.md `events/`): the SQS-compatible
queue service (`events.sqs`), event source mappings and their pollers (`events.mappings`), EventBridge
Scheduler and rules (`events.schedules`, `events.bus`) and the event-pattern matcher (`events.pattern`).
Nothing here invokes a function except through `invoke/`."""

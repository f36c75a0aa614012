"""The registry: functions, versions, aliases, concurrency, tags and policies, their persistence, and the
content-addressed code store. Never starts processes."""

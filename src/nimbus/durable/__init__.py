"""Durable executions (issue 18): checkpoints, timers, callbacks, chained invokes and re-invocation of the
official durable-execution SDK's handlers. Everything an execution is lives in the database."""

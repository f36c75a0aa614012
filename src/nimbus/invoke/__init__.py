"""The data plane: qualifier routing, concurrency counting and throttling, sync and async invocation.
Knows nothing of how a sandbox is built: it hands work to `sandbox.types.Sandbox`."""

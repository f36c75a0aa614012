"""The `nimbus` command. Except for `nimbus server`, it speaks only the HTTP API, like any client."""

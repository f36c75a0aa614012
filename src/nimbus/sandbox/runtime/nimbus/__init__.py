"""Inside an execution environment, `nimbus` holds only the runtime helpers user code may import."""

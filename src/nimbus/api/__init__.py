"""HTTP surfaces: the Lambda REST API (control plane and invoke), the CloudWatch Logs subset, health.
Parsing, validation and error mapping only: no state, no business rules."""

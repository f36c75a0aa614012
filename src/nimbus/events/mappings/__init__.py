"""Event source mappings: the Lambda API for them (service), their pollers, and the manager running them."""

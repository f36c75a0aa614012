"""Helpers for function code running on nimbus."""

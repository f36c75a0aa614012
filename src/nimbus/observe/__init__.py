"""Observability: the function log store and its queries, START/END/REPORT lines, the server's own logs."""

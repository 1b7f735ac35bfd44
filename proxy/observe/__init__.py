"""Observability: Prometheus metrics, structured logs and the access line."""

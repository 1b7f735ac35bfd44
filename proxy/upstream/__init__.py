"""Talking to Juspay: the HTTP client, its circuit breaker and bulkhead."""

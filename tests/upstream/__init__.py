"""Tests of the Juspay client: failures, retries, the circuit breaker and bulkhead."""

"""Tests of the HTTP edge: validation, auth, rate limits, webhooks, internal routes, OpenAPI."""

"""Tests of what the proxy reports: metrics, log lines and the access line."""

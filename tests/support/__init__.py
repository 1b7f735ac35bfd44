"""Helpers for the test suite: real processes on loopback, never mocks."""

"""Tests of configuration: loading, validation, describe() and secrets."""

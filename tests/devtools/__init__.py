"""Tests of the developer tools: the simulator command."""

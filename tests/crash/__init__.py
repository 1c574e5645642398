"""Crash-consistency tests: kill -9 the real server under load, restart, check (see test_crash)."""

"""Storage tests, every one against SQLite and PostgreSQL (a package so that mypy can tell
this folder's ``conftest`` from ``tests/conftest.py``)."""

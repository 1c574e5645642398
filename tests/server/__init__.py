"""End-to-end tests: the real server as a child process on loopback, on both backends."""

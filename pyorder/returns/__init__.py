"""7-day no-reason returns and lightning refunds (see docs/returns.md)."""

"""Several nodes on one PostgreSQL (``docs/scale-out.md``): each node's share of the stock."""

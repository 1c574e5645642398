"""Durable storage backends behind one interface (``pyorder.storage.base.Store``)."""

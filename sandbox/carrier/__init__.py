"""A parcel carrier sandbox: shipments and return shipments, return quotes, and signed tracking
events pushed over (scaled) time.

``app.create_app`` builds one carrier; ``main`` is its command (``python -m sandbox.carrier.main`` from a checkout).
"""

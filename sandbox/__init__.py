"""Sandboxes of the platform's external providers, each its own aiohttp server process.

- ``sandbox.payment``: a Stripe-like payment provider (PaymentIntents, refunds, signed webhooks).
- ``sandbox.carrier``: a parcel carrier (shipments, return shipments, signed tracking events).
- ``pyorder.kernel.signing``: the webhook signature scheme both use (the platform's, which
  the sandboxes import; the main server verifies with it).

Every instance keeps its own ledger (``GET /_sandbox/ledger``) of what it really charged,
refunded or shipped, and has fault knobs (``POST /_sandbox/faults``). ``docs/sandbox.md`` has
the API, the state machines and how to run several providers side by side.
"""

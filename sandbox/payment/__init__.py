"""A Stripe-like payment provider sandbox: PaymentIntents, captures, refunds, signed webhooks.

``app.create_app`` builds one provider; ``main`` is its command (``python -m sandbox.payment.main`` from a checkout).
"""

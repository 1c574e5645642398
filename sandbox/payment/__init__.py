"""A Stripe-like payment provider sandbox: PaymentIntents, captures, refunds, signed webhooks.

``app.create_app`` builds one provider; ``main`` is the ``pyorder-payment-sandbox`` command.
"""

"""Payments: provider routing, the payment and attempt state machines, signed webhooks, the
outbox of provider calls and reconciliation (see ``docs/payments.md``)."""

"""Typed application keys of the payment sandbox."""

from aiohttp import web

from sandbox.payment.provider import PaymentProvider

PROVIDER = web.AppKey("payment_provider", PaymentProvider)

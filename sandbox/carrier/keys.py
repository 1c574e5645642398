"""Typed application keys of the carrier sandbox."""

from aiohttp import web

from sandbox.carrier.carrier import Carrier

CARRIER = web.AppKey("carrier", Carrier)

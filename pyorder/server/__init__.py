"""The pyorder HTTP service: aiohttp + uvloop around ``pyorder.platform.Platform``."""

"""Callbacks due later on the running event loop (a refund settling, a parcel's next scan).

All of them are cancelled when the instance stops, so nothing fires into a closed loop.
"""

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Timers:
    def __init__(self) -> None:
        self._handles: set[asyncio.TimerHandle] = set()

    def after(self, delay_s: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in ``delay_s`` seconds (0: on the next loop iteration)."""
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            assert handle is not None
            self._handles.discard(handle)
            try:
                callback()
            except Exception:
                log.exception("a scheduled sandbox callback failed")

        handle = asyncio.get_running_loop().call_later(max(0.0, delay_s), fire)
        self._handles.add(handle)

    def cancel_all(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()

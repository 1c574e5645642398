"""The pyorder HTTP service: aiohttp + uvloop around ``pyorder.platform.Platform``.

Importing it sets ``OPENBLAS_NUM_THREADS=1`` unless the environment says otherwise: the service
does no linear algebra, and numpy (which the platform imports for small arrays) would otherwise
start OpenBLAS's thread pool, whose threads spin for about 0.1 s of CPU at every start (the
import takes 0.41 s of CPU instead of 0.54: many servers and workers start in the tests).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

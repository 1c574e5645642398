"""The shared kernel: what every capability uses and none owns.

Clock and time formats (``clock``), webhook signatures (``signing``), the domain errors
(``errors``) and the outbox machinery (``outbox``). The kernel imports nothing of the domain
(orders, catalog, payments, logistics, returns, events, the bootstrap); ``tests/test_architecture.py``
keeps it so.
"""

"""Orders: placing (one or many), reading, cancelling and expiring orders.

``model`` holds the records (``Order``, ``OrderLine``, ``OrderStatus``, ``StatusChange``,
``PendingOrder``), ``input`` what a caller gives (``OrderInput``, ``Address``) and how an
address is refused, ``ports`` what orders need of their neighbours (``Shipping``,
``Refunding``), ``service`` the ``Orders`` service. Import from those modules: this package
re-exports nothing, so importing a record does not import the service.
"""

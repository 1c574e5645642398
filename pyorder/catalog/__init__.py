"""The catalogue: warehouses, delivery regions, SKUs and their stock per warehouse.

``model`` holds the records (``Warehouse``, ``Sku``, ``StockRow``, ``SkuView``), ``service``
the ``Catalog`` service. Import from those modules: this package re-exports nothing, so
importing a record does not import the service.
"""

"""HTTP routes of warehouses, regions and SKUs (``/v1/warehouses``, ``/v1/regions``, ``/v1/skus``)."""

from aiohttp import web

from pyorder.auth import Principal
from pyorder.kernel.errors import NotFound
from pyorder.server.api.catalog_bodies import (
    RegionIn,
    RegionOut,
    SkuIn,
    SkuList,
    SkuOut,
    StockAdjustIn,
    WarehouseIn,
    WarehouseList,
    WarehouseOut,
    sku_out,
    warehouse_out,
)
from pyorder.server.keys import IDEMPOTENCY, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, BODY_ERRORS, operation
from pyorder.server.params import LIMIT_500, MAX_ID, REGION, IntParam
from pyorder.server.requests import decode, json_response, principal

routes = web.RouteTableDef()
WAREHOUSE_ID = IntParam("warehouse_id", "path", 0, MAX_ID)
SKU_ID = IntParam("sku_id", "path", 0, MAX_ID)
SKU_AFTER = IntParam("after", "query", 0, MAX_ID, default=0)


@routes.post("/v1/warehouses")
@operation(
    "Create a warehouse (merchant, admin)",
    201,
    WarehouseOut,
    WarehouseIn,
    AUTH_ERRORS + BODY_ERRORS + (409,),
    idempotent_key=True,
)
async def create_warehouse(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, WarehouseIn)
        made = await catalog.run(lambda: catalog.create_warehouse(who, data.name, data.regions))
        return 201, warehouse_out(made)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/warehouses")
@operation(
    "List warehouses (merchant: its own and the platform's; admin: all)",
    200,
    WarehouseList,
    errors=AUTH_ERRORS,
)
async def list_warehouses(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog
    found = catalog.list_warehouses(principal(request))
    return json_response(WarehouseList([warehouse_out(w) for w in found]))


@routes.get("/v1/warehouses/{warehouse_id}")
@operation(
    "Read a warehouse (merchant: its own or the platform's, another merchant's is 404)",
    200,
    WarehouseOut,
    errors=(*AUTH_ERRORS, 404, 422),
    params=(WAREHOUSE_ID,),
)
async def get_warehouse(request: web.Request) -> web.Response:
    who = principal(request)
    wid = WAREHOUSE_ID.get(request)
    return json_response(warehouse_out(request.app[PLATFORM].catalog.warehouse(who, wid)))


@routes.put("/v1/regions/{region}")
@operation(
    "Set the warehouses serving a region, nearest first (admin)",
    200,
    RegionOut,
    RegionIn,
    AUTH_ERRORS + BODY_ERRORS + (409,),
    (REGION,),
    idempotent_key=True,
)
async def set_region(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog
    code = REGION.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, RegionIn)
        REGION.check(code)
        listed = await catalog.run(lambda: catalog.set_region(who, code, data.warehouses))
        return 200, RegionOut(code, listed)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/regions/{region}")
@operation(
    "Read the warehouses serving a region", 200, RegionOut, errors=(401, 404), params=(REGION,)
)
async def get_region(request: web.Request) -> web.Response:
    principal(request)
    code = REGION.get(request)
    return json_response(RegionOut(code, request.app[PLATFORM].catalog.region(code)))


@routes.post("/v1/skus")
@operation(
    "Create a SKU with stock per warehouse (merchant, admin)",
    201,
    SkuOut,
    SkuIn,
    AUTH_ERRORS + BODY_ERRORS + (409,),
    idempotent_key=True,
)
async def create_sku(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, SkuIn)
        stock: dict[int, int] = {}
        for entry in data.stock:
            stock[entry.warehouse] = stock.get(entry.warehouse, 0) + entry.units
        view = await catalog.run(
            lambda: catalog.create_sku(
                who,
                title=data.title,
                price=data.price,
                currency=data.currency,
                stock=stock,
                limit_per_buyer=data.limit_per_buyer,
                category=data.category,
                release_ms=data.release_ms,
            )
        )
        return 201, sku_out(view)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/skus")
@operation(
    "List SKUs (merchants: their own)",
    200,
    SkuList,
    errors=(401, 422),
    params=(SKU_AFTER, LIMIT_500),
)
async def list_skus(request: web.Request) -> web.Response:
    who = principal(request)
    after = SKU_AFTER.optional(request)
    limit = LIMIT_500.get(request)
    catalog = request.app[PLATFORM].catalog
    views = catalog.list_skus(who, -1 if after is None else after, limit)
    if catalog.sync is not None:  # a cluster node: the stock the store holds, not its lease
        views = await catalog.pool_views([v.sku for v in views])
    cursor = str(views[-1].sku.id) if len(views) == limit else None
    return json_response(SkuList([sku_out(v) for v in views], cursor))


@routes.get("/v1/skus/{sku_id}")
@operation("Read a SKU with its stock", 200, SkuOut, errors=(401, 404, 422), params=(SKU_ID,))
async def get_sku(request: web.Request) -> web.Response:
    who = principal(request)
    sku_id = SKU_ID.get(request)
    catalog = request.app[PLATFORM].catalog
    if catalog.sync is None:
        return json_response(sku_out(catalog.get_sku(who, sku_id)))
    try:
        view = catalog.get_sku(who, sku_id)
    except NotFound:  # made on another node within the last second: mirror it now
        await catalog.sync.refresh()
        view = catalog.get_sku(who, sku_id)
    view = await catalog.pool_view(view.sku)  # the stock the store holds, not this node's lease
    return json_response(sku_out(view))


@routes.post("/v1/skus/{sku_id}/stock")
@operation(
    "Restock or adjust a SKU in a warehouse (owner)",
    200,
    SkuOut,
    StockAdjustIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409),
    (SKU_ID,),
    idempotent_key=True,
)
async def adjust_stock(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog
    sku_id = SKU_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, StockAdjustIn)
        if catalog.sync is not None:  # a cluster node: the units go to the pool
            return 200, sku_out(await catalog.adjust_pool(who, sku_id, data.warehouse, data.delta))
        return 200, sku_out(catalog.adjust_stock(who, sku_id, data.warehouse, data.delta))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)

"""HTTP routes of warehouses, regions and SKUs (``/v1/warehouses``, ``/v1/regions``, ``/v1/skus``)."""

import re

from aiohttp import web

from pyorder.auth import Principal
from pyorder.kernel.errors import InvalidInput
from server.keys import IDEMPOTENCY, PLATFORM
from server.requests import decode, int_param, json_response, principal
from server.schemas import (
    RegionIn,
    RegionOut,
    SkuIn,
    SkuList,
    StockAdjustIn,
    WarehouseIn,
    WarehouseList,
    sku_out,
    warehouse_out,
)

routes = web.RouteTableDef()
MAX_ID = 2**31 - 1


@routes.post("/v1/warehouses")
async def create_warehouse(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, WarehouseIn)
        return 201, warehouse_out(catalog.create_warehouse(who, data.name, data.regions))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/warehouses")
async def list_warehouses(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog
    found = catalog.list_warehouses(principal(request))
    return json_response(WarehouseList([warehouse_out(w) for w in found]))


@routes.get("/v1/warehouses/{warehouse_id}")
async def get_warehouse(request: web.Request) -> web.Response:
    who = principal(request)
    wid = int_param(request, "warehouse_id", lo=0, hi=MAX_ID)
    return json_response(warehouse_out(request.app[PLATFORM].catalog.warehouse(who, wid)))


@routes.put("/v1/regions/{region}")
async def set_region(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog
    code = request.match_info["region"]

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, RegionIn)
        _check_region_code(code)
        return 200, RegionOut(code, catalog.set_region(who, code, data.warehouses))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/regions/{region}")
async def get_region(request: web.Request) -> web.Response:
    principal(request)
    code = request.match_info["region"]
    return json_response(RegionOut(code, request.app[PLATFORM].catalog.region(code)))


@routes.post("/v1/skus")
async def create_sku(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, SkuIn)
        stock: dict[int, int] = {}
        for entry in data.stock:
            stock[entry.warehouse] = stock.get(entry.warehouse, 0) + entry.units
        view = catalog.create_sku(
            who,
            title=data.title,
            price=data.price,
            currency=data.currency,
            stock=stock,
            limit_per_buyer=data.limit_per_buyer,
            category=data.category,
        )
        return 201, sku_out(view)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/skus")
async def list_skus(request: web.Request) -> web.Response:
    who = principal(request)
    after = (
        int_param(request, "after", lo=0, hi=MAX_ID, default=0) if "after" in request.query else -1
    )
    limit = int_param(request, "limit", lo=1, hi=500, default=50)
    views = request.app[PLATFORM].catalog.list_skus(who, after, limit)
    cursor = str(views[-1].sku.id) if len(views) == limit else None
    return json_response(SkuList([sku_out(v) for v in views], cursor))


@routes.get("/v1/skus/{sku_id}")
async def get_sku(request: web.Request) -> web.Response:
    who = principal(request)
    sku_id = int_param(request, "sku_id", lo=0, hi=MAX_ID)
    return json_response(sku_out(request.app[PLATFORM].catalog.get_sku(who, sku_id)))


@routes.post("/v1/skus/{sku_id}/stock")
async def adjust_stock(request: web.Request) -> web.Response:
    catalog = request.app[PLATFORM].catalog
    sku_id = int_param(request, "sku_id", lo=0, hi=MAX_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, StockAdjustIn)
        return 200, sku_out(catalog.adjust_stock(who, sku_id, data.warehouse, data.delta))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


def _check_region_code(code: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", code):
        raise InvalidInput("a region code has 1 to 64 letters, digits or _.:-", field="region")

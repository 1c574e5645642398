"""HTTP routes of the risk rules, lists and thresholds (``/v1/risk/...``, docs/risk.md,
"Managing rules and lists"): admins manage the platform's rules (and may read, change or
delete any merchant's), the allow/block lists and the thresholds; merchants their own rules
only, each seeing none of another's (404); buyers nothing (403). Every change is audited
(``GET /v1/risk/audit``) and live for the next decision once it is answered; in cluster mode
the requests are served by the leader and the other nodes take the change within a second
(``pyorder.cluster.risk``)."""

from aiohttp import web

from pyorder.auth import Principal, Role
from pyorder.risk.policy import ListKind
from pyorder.risk.records import RULE_PREFIX
from pyorder.server.api.risk_bodies import (
    LIST_VALUE,
    RiskAuditList,
    RiskListEntryIn,
    RiskListEntryList,
    RiskListEntryOut,
    RiskRuleIn,
    RiskRuleList,
    RiskRuleOut,
    RiskThresholdsIn,
    RiskThresholdsOut,
    audit_out,
    entry_out,
    rule_out,
    thresholds_out,
)
from pyorder.server.forwarding import by_leader, routed
from pyorder.server.keys import IDEMPOTENCY, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, BODY_ERRORS, operation
from pyorder.server.params import LIMIT_200, MAX_ID, IntParam, PrefixedIntParam, TextParam
from pyorder.server.requests import decode, json_response, principal

routes = web.RouteTableDef()
RULE_ID = PrefixedIntParam("rule_id", "path", RULE_PREFIX, 1, MAX_ID)
"""A rule as listed (``rule_<n>``) or by its number."""
LIST = TextParam("list", "path", "allow|block", "list is allow or block")
KIND = TextParam(
    "kind", "path", "|".join(k.value for k in ListKind), "kind is one of " + ", ".join(ListKind)
)
VALUE = TextParam("value", "path", LIST_VALUE, f"value must match {LIST_VALUE}")
AUDIT_BEFORE = IntParam("before", "query", 1, 2**63 - 1)


@routes.get("/v1/risk/rules")
@routed(by_leader)
@operation(
    "List risk rules by id: a merchant's own, every one (the platform's and merchants') for"
    " an admin",
    200,
    RiskRuleList,
    errors=AUTH_ERRORS,
)
async def list_rules(request: web.Request) -> web.Response:
    found = request.app[PLATFORM].risk.rules(principal(request))
    return json_response(RiskRuleList([rule_out(r) for r in found]))


@routes.post("/v1/risk/rules")
@routed(by_leader)
@operation(
    "Make a risk rule: a platform rule (every order) for an admin, a merchant's own (its"
    " orders only); 201, live for the next decision. 422 invalid_rule for a condition outside"
    " the rule language (the message says where), 409 too_many_rules past 100 per owner",
    201,
    RiskRuleOut,
    RiskRuleIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 409, 503),
    idempotent_key=True,
)
async def create_rule(request: web.Request) -> web.Response:
    risk = request.app[PLATFORM].risk

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, RiskRuleIn)
        return 201, rule_out(risk.create_rule(who, data.action, data.condition, data.description))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/risk/rules/{rule_id}")
@routed(by_leader)
@operation(
    "Read a risk rule (rule_<n> or <n>): its owner's, or an admin",
    200,
    RiskRuleOut,
    errors=(*AUTH_ERRORS, 404, 422),
    params=(RULE_ID,),
)
async def get_rule(request: web.Request) -> web.Response:
    rule = request.app[PLATFORM].risk.rule(principal(request), RULE_ID.get(request))
    return json_response(rule_out(rule))


@routes.put("/v1/risk/rules/{rule_id}")
@routed(by_leader)
@operation(
    "Replace a risk rule's action, condition and description (its owner, or an admin); live"
    " for the next decision. 422 invalid_rule for a condition outside the rule language",
    200,
    RiskRuleOut,
    RiskRuleIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (RULE_ID,),
    idempotent_key=True,
)
async def update_rule(request: web.Request) -> web.Response:
    risk = request.app[PLATFORM].risk
    rule_id = RULE_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, RiskRuleIn)
        rule = risk.update_rule(who, rule_id, data.action, data.condition, data.description)
        return 200, rule_out(rule)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.delete("/v1/risk/rules/{rule_id}")
@routed(by_leader)
@operation(
    "Delete a risk rule (its owner, or an admin): it applies to no decision from then on",
    200,
    RiskRuleOut,
    None,
    (*AUTH_ERRORS, 404, 409, 422, 503),
    (RULE_ID,),
    idempotent_key=True,
)
async def delete_rule(request: web.Request) -> web.Response:
    risk = request.app[PLATFORM].risk
    rule_id = RULE_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, rule_out(risk.delete_rule(who, rule_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/risk/lists")
@routed(by_leader)
@operation(
    "The platform's allow and block lists (admin), by list, kind and value",
    200,
    RiskListEntryList,
    errors=AUTH_ERRORS,
)
async def list_entries(request: web.Request) -> web.Response:
    found = request.app[PLATFORM].risk.entries(principal(request))
    return json_response(RiskListEntryList([entry_out(e) for e in found]))


@routes.post("/v1/risk/lists")
@routed(by_leader)
@operation(
    "Put a value on the platform's allow or block list of a kind (admin): an allow-listed"
    " value allows whatever the score, a block-listed one blocks; 201, live for the next"
    " decision. 409 already_listed",
    201,
    RiskListEntryOut,
    RiskListEntryIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 409, 503),
    idempotent_key=True,
)
async def add_entry(request: web.Request) -> web.Response:
    risk = request.app[PLATFORM].risk

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, RiskListEntryIn)
        return 201, entry_out(risk.add_entry(who, data.list, data.kind, data.value))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.delete("/v1/risk/lists/{list}/{kind}/{value}")
@routed(by_leader)
@operation(
    "Take a value off the platform's allow or block list (admin); 404 if it is not on it",
    200,
    RiskListEntryOut,
    None,
    (*AUTH_ERRORS, 404, 409, 422, 503),
    (LIST, KIND, VALUE),
    idempotent_key=True,
)
async def remove_entry(request: web.Request) -> web.Response:
    """Take a value off a list: the caller's role first (403), then the path (422)."""
    risk = request.app[PLATFORM].risk
    principal(request).require(Role.ADMIN)
    list_name, kind, value = LIST.get(request), KIND.get(request), VALUE.get(request)
    for param, raw in ((LIST, list_name), (KIND, kind), (VALUE, value)):
        param.check(raw)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, entry_out(risk.remove_entry(who, list_name, ListKind(kind), value))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/risk/thresholds")
@routed(by_leader)
@operation(
    "The platform-wide thresholds (admin): scores at or above which an order is blocked, or"
    " held for review, and the risk configuration's version",
    200,
    RiskThresholdsOut,
    errors=AUTH_ERRORS,
)
async def get_thresholds(request: web.Request) -> web.Response:
    return json_response(thresholds_out(request.app[PLATFORM].risk.thresholds(principal(request))))


@routes.put("/v1/risk/thresholds")
@routed(by_leader)
@operation(
    "Set the platform-wide thresholds (admin); live for the next decision. 422"
    " invalid_thresholds unless 0 <= review <= block <= 100",
    200,
    RiskThresholdsOut,
    RiskThresholdsIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 409, 503),
    idempotent_key=True,
)
async def set_thresholds(request: web.Request) -> web.Response:
    risk = request.app[PLATFORM].risk

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, RiskThresholdsIn)
        return 200, thresholds_out(risk.set_thresholds(who, data.block, data.review))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/risk/audit")
@routed(by_leader)
@operation(
    "The audit log of risk rules, lists and thresholds, newest first: every change for an"
    " admin, those of its own rules for a merchant; who, when, what, before and after."
    " `before` (next_cursor) pages back",
    200,
    RiskAuditList,
    errors=(*AUTH_ERRORS, 422, 503),
    params=(AUDIT_BEFORE, LIMIT_200),
)
async def audit(request: web.Request) -> web.Response:
    who = principal(request)
    before = AUDIT_BEFORE.optional(request)
    limit = LIMIT_200.get(request)
    found = await request.app[PLATFORM].risk.audit(who, before, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(RiskAuditList([audit_out(a) for a in found], cursor))

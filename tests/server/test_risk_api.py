"""Risk rules, lists and thresholds over HTTP (``/v1/risk/...``) on a real server, both stores:
a change is visible at once and audited (who, what, before and after), a bad condition is
refused with the rule language's message, a merchant sees only its own rules and audit
entries, errors come in the API's error shape with their statuses, and a restart keeps it all
(the authorization matrix of every route is in ``test_authorization``)."""

from typing import Any

from tests.server.e2e_lib import Launch, Server

RULE = {"action": "block", "condition": "device_buyers_24h >= 5 and agent_class == 3"}


def _error(srv: Server, method: str, path: str, token: str, json: Any, status: int) -> str:
    resp = srv.call(method, path, token=token, json=json)
    assert resp.status == status, resp
    return str(resp.json()["error"]["message"]) + "|" + resp.error_code


def test_rules_lists_thresholds_and_their_audit_over_http(launch: Launch) -> None:
    srv = launch()
    admin, acme, other = srv.admin(), srv.token("merchant", "acme"), srv.token("merchant", "b")

    # rules: a bad condition is refused with its message, nothing made
    said = _error(
        srv, "POST", "/v1/risk/rules", acme, {"action": "block", "condition": "nope >= 1"}, 422
    )
    assert said == "'nope >= 1', column 1: unknown feature 'nope'|invalid_rule"
    said = _error(srv, "POST", "/v1/risk/rules", acme, {"action": "x", "condition": "1 < 2"}, 422)
    assert said.endswith("|invalid_input")
    platform_rule = srv.ok("POST", "/v1/risk/rules", token=admin, json=RULE, expect=201)
    assert (platform_rule["id"], platform_rule["owner"]) == ("rule_1", "platform")
    mine = srv.ok(
        "POST",
        "/v1/risk/rules",
        token=acme,
        json={"action": "review", "condition": "score >= 40", "description": "mine"},
        expect=201,
    )
    assert (mine["id"], mine["owner"], mine["description"]) == ("rule_2", "merchant:acme", "mine")

    def ids(token: str) -> list[str]:
        return [r["id"] for r in srv.ok("GET", "/v1/risk/rules", token=token)["rules"]]

    assert (ids(admin), ids(acme), ids(other)) == (["rule_1", "rule_2"], ["rule_2"], [])
    assert srv.ok("GET", "/v1/risk/rules/2", token=acme) == mine  # rule_<n> or <n>
    assert _error(srv, "GET", "/v1/risk/rules/rule_2", other, None, 404).endswith("|not_found")
    assert _error(srv, "GET", "/v1/risk/rules/rule_x", acme, None, 422).endswith("|invalid_input")

    changed = {"action": "block", "condition": "score >= 90 or missing(buyer_orders_24h)"}
    updated = srv.ok("PUT", "/v1/risk/rules/rule_2", token=acme, json=changed)
    assert (updated["action"], updated["condition"]) == ("block", changed["condition"])
    assert srv.ok("GET", "/v1/risk/rules/rule_2", token=acme)["condition"] == changed["condition"]
    bad = {"action": "block", "condition": "score >="}
    assert _error(srv, "PUT", "/v1/risk/rules/rule_2", acme, bad, 422).endswith("|invalid_rule")
    srv.ok("DELETE", "/v1/risk/rules/rule_1", token=admin)
    assert _error(srv, "GET", "/v1/risk/rules/rule_1", admin, None, 404).endswith("|not_found")
    assert _error(srv, "DELETE", "/v1/risk/rules/rule_1", admin, None, 404).endswith("|not_found")

    # lists: the platform's, admins only
    entry = {"list": "block", "kind": "ip", "value": "203.0.113.7"}
    added = srv.ok("POST", "/v1/risk/lists", token=admin, json=entry, expect=201)
    assert (added["owner"], added["value"]) == ("platform", "203.0.113.7")
    assert _error(srv, "POST", "/v1/risk/lists", admin, entry, 409).endswith("|already_listed")
    allow = {"list": "allow", "kind": "buyer", "value": "b-42"}
    srv.ok("POST", "/v1/risk/lists", token=admin, json=allow, expect=201)
    listed = srv.ok("GET", "/v1/risk/lists", token=admin)["entries"]
    assert [(e["list"], e["kind"], e["value"]) for e in listed] == [
        ("allow", "buyer", "b-42"),
        ("block", "ip", "203.0.113.7"),
    ]
    srv.ok("DELETE", "/v1/risk/lists/allow/buyer/b-42", token=admin)
    gone = _error(srv, "DELETE", "/v1/risk/lists/allow/buyer/b-42", admin, None, 404)
    assert gone.endswith("|not_found")
    bad_kind = _error(srv, "DELETE", "/v1/risk/lists/allow/shoe/b-42", admin, None, 422)
    assert bad_kind.endswith("|invalid_input")

    # thresholds: admins only, review <= block
    assert srv.ok("GET", "/v1/risk/thresholds", token=admin)["block"] == 75
    wrong = {"block": 30, "review": 40}
    said = _error(srv, "PUT", "/v1/risk/thresholds", admin, wrong, 422)
    assert said.endswith("|invalid_thresholds")
    over = _error(srv, "PUT", "/v1/risk/thresholds", admin, {"block": 101, "review": 1}, 422)
    assert over.endswith("|invalid_input")
    set_to = srv.ok("PUT", "/v1/risk/thresholds", token=admin, json={"block": 80, "review": 60})
    assert (set_to["block"], set_to["review"], set_to["version"]) == (80, 60, 8)

    # the audit log: every change, newest first; a merchant's own rules' only
    log = srv.ok("GET", "/v1/risk/audit", token=admin)["entries"]
    assert [(a["action"], a["subject"], a["principal"]) for a in reversed(log)] == [
        ("rule.created", "rule_1", "admin:ops"),
        ("rule.created", "rule_2", "merchant:acme"),
        ("rule.updated", "rule_2", "merchant:acme"),
        ("rule.deleted", "rule_1", "admin:ops"),
        ("list.added", "block:ip:203.0.113.7", "admin:ops"),
        ("list.added", "allow:buyer:b-42", "admin:ops"),
        ("list.removed", "allow:buyer:b-42", "admin:ops"),
        ("thresholds.changed", "thresholds", "admin:ops"),
    ]
    assert log[0]["before"] == {"block": 75, "review": 65}
    assert log[0]["after"] == {"block": 80, "review": 60}
    update = log[5]
    assert update["before"]["condition"] == "score >= 40"
    assert update["after"]["condition"] == changed["condition"]
    assert (log[4]["before"]["id"], log[4]["after"]) == ("rule_1", None)
    page = srv.ok("GET", "/v1/risk/audit?limit=3", token=admin)
    assert [a["id"] for a in page["entries"]] == [a["id"] for a in log[:3]]
    older = srv.ok("GET", f"/v1/risk/audit?limit=3&before={page['next_cursor']}", token=admin)
    assert [a["id"] for a in older["entries"]] == [a["id"] for a in log[3:6]]
    acme_log = srv.ok("GET", "/v1/risk/audit", token=acme)["entries"]
    assert [a["action"] for a in acme_log] == ["rule.updated", "rule.created"]
    assert srv.ok("GET", "/v1/risk/audit", token=other)["entries"] == []

    # a restart keeps rules, lists and thresholds (and the log)
    srv.restart()
    assert ids(admin) == ["rule_2"]
    assert srv.ok("GET", "/v1/risk/rules/rule_2", token=acme)["condition"] == changed["condition"]
    kept = srv.ok("GET", "/v1/risk/lists", token=admin)["entries"]
    assert [(e["list"], e["value"]) for e in kept] == [("block", "203.0.113.7")]
    thresholds = srv.ok("GET", "/v1/risk/thresholds", token=admin)
    assert (thresholds["block"], thresholds["review"], thresholds["version"]) == (80, 60, 8)
    assert srv.ok("GET", "/v1/risk/audit", token=admin)["entries"] == log
    key = {"Idempotency-Key": "one-rule"}
    third = srv.ok("POST", "/v1/risk/rules", token=other, json=RULE, expect=201, headers=key)
    assert third["id"] == "rule_3"  # ids are not reused
    again = srv.call("POST", "/v1/risk/rules", token=other, json=RULE, headers=key)
    assert (again.status, again.json()) == (201, third)  # replayed, not made twice
    assert ids(other) == ["rule_3"]

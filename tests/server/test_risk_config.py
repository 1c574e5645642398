"""The platform's risk rules, lists and thresholds from a file (``--risk-config``), end to end on
both stores: applied at start and deciding the next orders, audited as ``admin:config``, applied
again after a restart with nothing to change (nothing audited), an edited file's rule updated
and a rule it dropped deleted, rules made over the API left alone; a bad file refused before the
server starts."""

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.server.e2e_lib import Launch, Server
from tests.server.test_risk_intake import BROWSER, HEADLESS, _flash_sale, _place

FIRST = """
[thresholds]
block = 80
review = 70

[[rules]]
id = "headless"
action = "block"
when = "agent_class == 3"
description = "bots"

[lists.block]
device = ["stolen-phone"]
"""

EDITED = """
[thresholds]
block = 80
review = 70

[[rules]]
id = "headless"
action = "review"
when = "agent_class == 3"
description = "bots, reviewed"

[lists.block]
device = ["stolen-phone"]
"""

DROPPED = """
[thresholds]
review = 60

[lists.block]
device = ["stolen-phone"]
"""


def _audit(srv: Server, admin: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = srv.ok("GET", "/v1/risk/audit?limit=100", token=admin)[
        "entries"
    ]
    return entries


def _rules(srv: Server, admin: str) -> dict[str, tuple[str, str]]:
    rules = srv.ok("GET", "/v1/risk/rules", token=admin)["rules"]
    return {r["description"]: (r["action"], r["condition"]) for r in rules}


def test_the_file_is_applied_at_start_and_again_after_edits(launch: Launch, tmp_path: Path) -> None:
    config = tmp_path / "risk.toml"
    config.write_text(FIRST, encoding="utf-8")
    srv = launch(
        "--risk",
        "--risk-rules-only",
        "--trusted-proxy",
        "127.0.0.0/8",
        "--risk-config",
        str(config),
    )
    _, sku, region = _flash_sale(srv)
    admin = srv.admin()

    def place(buyer: str, device: str, agent: str = BROWSER) -> Any:
        return _place(srv, buyer, sku, region, ip="10.8.8.8", device=device, agent=agent)

    assert place("a", "d-a", HEADLESS).error_code == "risk_blocked"
    assert place("b", "stolen-phone").error_code == "risk_blocked"
    assert place("c", "d-c").status == 201
    assert _rules(srv, admin) == {"config:headless bots": ("block", "agent_class == 3")}
    thresholds = srv.ok("GET", "/v1/risk/thresholds", token=admin)
    assert (thresholds["block"], thresholds["review"]) == (80, 70)
    applied = _audit(srv, admin)
    assert sorted(e["action"] for e in applied) == [
        "list.added",
        "rule.created",
        "thresholds.changed",
    ]
    assert {e["principal"] for e in applied} == {"admin:config"}
    # A rule of the API's own is not the file's business.
    api_rule = {"action": "review", "condition": "amount >= 1000000", "description": "big"}
    srv.ok("POST", "/v1/risk/rules", token=admin, json=api_rule, expect=201)
    # The API cannot make a rule pass for the file's.
    forged = {**api_rule, "description": "config:headless"}
    refused = srv.call("POST", "/v1/risk/rules", token=admin, json=forged)
    assert (refused.status, refused.error_code) == (422, "invalid_rule")

    srv.restart()  # the same file: nothing to change, nothing audited
    assert len(_audit(srv, admin)) == len(applied) + 1

    config.write_text(EDITED, encoding="utf-8")
    srv.restart()
    assert _rules(srv, admin) == {
        "config:headless bots, reviewed": ("review", "agent_class == 3"),
        "big": ("review", "amount >= 1000000"),
    }
    held = place("d", "d-d", HEADLESS)
    assert (held.status, held.json()["status"]) == (201, "in_review")

    config.write_text(DROPPED, encoding="utf-8")
    srv.restart()
    assert _rules(srv, admin) == {"big": ("review", "amount >= 1000000")}
    thresholds = srv.ok("GET", "/v1/risk/thresholds", token=admin)
    assert (thresholds["block"], thresholds["review"]) == (80, 60)  # block as stored
    assert place("e", "d-e", HEADLESS).status == 201  # no rule holds it any more
    assert place("f", "stolen-phone").error_code == "risk_blocked"  # values leave by the API
    actions = [e["action"] for e in _audit(srv, admin)]
    assert actions.count("rule.updated") == 1
    assert actions.count("rule.deleted") == 1


def test_a_bad_file_is_refused_before_the_server_starts(tmp_path: Path) -> None:
    for text, said in (
        ("[[rules]]\nid = 'x'\naction = 'block'\nwhen = 'no_such_feature > 1'\n", "rule 'x'"),
        ("[[rules]]\nid = 'x'\naction = 'explode'\nwhen = 'amount > 1'\n", "rule 1"),
        ("[lists.block]\nshoe = ['x']\n", "lists are of"),
        ("[lists.block\n", "not TOML"),
        ("[lists.block]\nip = ['a b']\n", "is not a list value"),
        ("[thresholds]\nblock = 'high'\n", "integer from 0 to 100"),
        ("[thresholds]\nblock = 50\nreview = 60\n", "review (60) <= block (50)"),
        ("rules = 3\n", "array of tables"),
        ("[[rules]]\nid = 'x'\naction = 'block'\nwhen = 'amount > 1'\nmerchant = 4\n", "API"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text, encoding="utf-8")
        args = ["--data-dir", str(tmp_path / "d"), "--risk", "--risk-config", str(bad)]
        done = subprocess.run(
            [sys.executable, "-m", "pyorder.server.main", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done
        assert "--risk-config" in done.stderr, done.stderr
        assert said in done.stderr, done.stderr

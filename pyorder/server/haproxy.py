"""The HAProxy configuration of a pool of pyorder nodes (``docs/operations.md``, "Local
cluster" and "What the balancer must be configured with").

``scripts/cluster.sh`` and the balancer tests (``tests/support/balancer.py``) both write the
configuration this module renders, so the one the docs show is the one that runs:

- a health check on ``GET /readyz`` every second (``fall 2``: a draining node is out within
  2 s, inside the node's default 3 s drain; ``rise 1``: a restarted node is back on its first
  ``200``);
- a retry on another node (``option redispatch 1``) after a connection failure for every
  request (nothing was sent), and after an empty answer or a response timeout only for the
  requests safe to run twice: ``GET``/``HEAD``, those carrying an ``Idempotency-Key``, and
  the payment providers' and carriers' webhooks;
- a stats page (CSV at ``/;csv``) on a listener of its own, where the tests read which node
  HAProxy holds up or down.

Written for HAProxy 2.6 (Debian 12). Run ``python3 -m pyorder.server.haproxy --help``.
"""

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

CHECK_INTER_S = 1
"""Seconds between two health checks of a node."""
FALL = 2
"""Failed checks in a row that take a node out of rotation."""
RISE = 1
"""Passed checks in a row that take it back."""
RETRIES = 2
"""Attempts after the first, each on another node."""


@dataclass(frozen=True)
class Pool:
    """Where HAProxy listens, and the nodes it balances over (``host:port`` each)."""

    bind: str
    """The front: ``host:port`` clients connect to."""
    nodes: Sequence[str]
    stats: str | None = None
    """``host:port`` of the stats page (none: no stats listener)."""
    response_timeout_s: float = 30.0
    """How long HAProxy waits for a node's answer before it gives up (``timeout server``)."""


def render(pool: Pool) -> str:
    """The whole ``haproxy.cfg`` for ``pool``: logs to stdout, runs in the foreground."""
    servers = "\n".join(
        f"    server n{i} {node} check" for i, node in enumerate(pool.nodes, start=1)
    )
    stats = (
        ""
        if pool.stats is None
        else f"""
listen stats
    bind {pool.stats}
    stats enable
    stats uri /
    stats refresh 1s
"""
    )
    return f"""\
# Written by pyorder.server.haproxy (docs/operations.md, "Local cluster"): do not edit.
global
    log stdout format raw local0 notice
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 30s
    timeout server {_seconds(pool.response_timeout_s)}
    timeout http-request 10s
    timeout http-keep-alive 15s
    timeout check 1s

frontend pyorder
    bind {pool.bind}
    default_backend pyorder

backend pyorder
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {CHECK_INTER_S}s fall {FALL} rise {RISE}
    retries {RETRIES}
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    # A request is retried only if HAProxy holds all of it: wait for the whole body (up to
    # tune.bufsize, 16 KiB) before sending it on.
    option http-buffer-request
    # A connection failure is retried for every request: nothing reached the node. An empty
    # answer or a timeout only for requests safe to run twice: reads, keyed writes (their
    # first answer is stored with their effects and replayed), and providers' and carriers'
    # webhooks (de-duplicated by event id).
    acl keyed req.hdr(Idempotency-Key) -m found
    acl provider_webhook path_beg /v1/webhooks/payments/ /v1/webhooks/carriers/
    http-request disable-l7-retry unless METH_GET || keyed || provider_webhook
{servers}
{stats}"""


def _seconds(value: float) -> str:
    return f"{int(value * 1000)}ms"


def main(argv: Sequence[str] | None = None) -> None:
    """Print the configuration for the pool given on the command line."""
    parser = argparse.ArgumentParser(
        prog="python3 -m pyorder.server.haproxy",
        description="Print the HAProxy configuration of a pool of pyorder nodes.",
    )
    parser.add_argument("--bind", required=True, help="host:port clients connect to")
    parser.add_argument("--stats", help="host:port of HAProxy's stats page")
    parser.add_argument(
        "--response-timeout-s", type=float, default=30.0, help="timeout server (default 30)"
    )
    parser.add_argument("nodes", nargs="+", metavar="HOST:PORT", help="the nodes")
    args = parser.parse_args(argv)
    sys.stdout.write(render(Pool(args.bind, args.nodes, args.stats, args.response_timeout_s)))


if __name__ == "__main__":
    main()

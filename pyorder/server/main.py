"""Command line: ``pyorder-server`` runs the service; ``pyorder-token`` mints development tokens."""

import argparse
import asyncio
import logging
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from pyorder.auth import Role, TokenIssuer, load_or_create_secret
from pyorder.cluster.stock import StockLeaseConfig
from pyorder.events.model import WebhooksConfig
from pyorder.logistics.carriers import CarrierConfig, LogisticsConfig, parse_carrier
from pyorder.payments.providers import (
    PaymentsConfig,
    ProviderConfig,
    load_config,
    parse_provider,
)
from pyorder.platform import Config
from pyorder.returns.config import ReturnsConfig, load_returns_config
from pyorder.risk import config_file
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.intake import DEFAULT_MODEL, FAILURE_OUTCOMES, RiskSettings
from pyorder.risk.rules import RuleError
from pyorder.server.admission import Admission
from pyorder.server.app import DEFAULT_MAX_BODY, create_app, metrics_app
from pyorder.server.connections import ConnectionLimits, GuardedAppRunner, raise_open_files_limit
from pyorder.server.drain import DEFAULT_DRAIN_S, Shutdown
from pyorder.server.keys import ADMISSION, DRAIN, METRICS
from pyorder.server.workers import Supervisor
from pyorder.storage.base import StorageError


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="pyorder-server", description="Run the pyorder order-intake server."
    )
    parser.add_argument("--host", default=os.environ.get("PYORDER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PYORDER_PORT", "8080")))
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("PYORDER_DATA_DIR", "data"))
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("PYORDER_DATABASE"),
        help="postgresql://... to use PostgreSQL; default: SQLite in the data directory",
    )
    parser.add_argument(
        "--commit-window-ms",
        type=float,
        default=0.0,
        help="extra wait before a group commit (default 0: a batch is what arrived during the"
        " previous commit)",
    )
    parser.add_argument("--payment-timeout-s", type=float, default=15 * 60)
    node = os.environ.get("PYORDER_NODE")
    parser.add_argument(
        "--node",
        type=int,
        default=int(node) if node else None,
        help="order-ID node number, 0-255 (default 0; on PostgreSQL it is leased from the"
        " database, and a second node on the same database is refused)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        default=os.environ.get("PYORDER_CLUSTER") == "1",
        help="cluster mode: several nodes on one PostgreSQL (docs/scale-out.md; in progress:"
        " see that note for what is shared across nodes so far)",
    )
    workers = os.environ.get("PYORDER_WORKERS")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=int(workers) if workers else 1,
        help="worker processes on this machine, sharing --port (SO_REUSEPORT) under one"
        " supervisor; more than 1 implies --cluster and needs --database postgresql://..."
        " (default 1: this process serves)",
    )
    parser.add_argument(
        "--peer-listen",
        type=_host_port_or_any,
        metavar="HOST:PORT",
        help="cluster mode: where this node takes the requests other nodes forward to it (an"
        " order's payments, parcels, returns and cancel are served by the node that took it);"
        " default: --host with a free port (0). Other nodes must reach it",
    )
    parser.add_argument(
        "--peer-url",
        help="cluster mode: the URL other nodes use for --peer-listen (default:"
        " http://HOST:PORT of that listener, this machine's name for a wildcard HOST)",
    )
    idle, leases = os.environ.get("PYORDER_STOCK_IDLE_S"), StockLeaseConfig()
    parser.add_argument(
        "--stock-idle-s",
        type=_positive_float,
        default=float(idle) if idle else leases.idle_s,
        help="cluster mode: a stock row of this node that sold nothing for this long gives its"
        " leased units back to the pool, for the nodes that sell it (default"
        f" {leases.idle_s:g})",
    )
    # Set by the --workers supervisor on its workers: bind the shared port with SO_REUSEPORT,
    # and stop gracefully when the supervisor (this pid) is gone.
    parser.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY)
    parser.add_argument(
        "--idempotency-retention-s",
        type=float,
        default=24 * 3600,
        help="how long first responses to Idempotency-Keys are replayed",
    )
    parser.add_argument(
        "--gil-switch-ms",
        type=float,
        default=float(os.environ.get("PYORDER_GIL_SWITCH_MS", "0.5")),
        help="Python's thread switch interval (sys.setswitchinterval), ms",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (slow)")
    drain = os.environ.get("PYORDER_DRAIN_S")
    parser.add_argument(
        "--drain-s",
        type=_non_negative_float,
        default=float(drain) if drain else DEFAULT_DRAIN_S,
        help="on SIGTERM or SIGINT, /readyz answers 503 and the server keeps serving this"
        " long (answers close their connection) before it stops accepting, so a load"
        " balancer checking /readyz stops sending first; a second signal stops at once"
        " (default %(default)s; 0: no wait; env PYORDER_DRAIN_S; docs/operations.md)",
    )
    conn = parser.add_argument_group("connections and load shedding (docs/server.md)")
    limits = ConnectionLimits()
    conn.add_argument(
        "--header-timeout-s",
        type=_positive_float,
        default=limits.header_timeout_s,
        help="from a request's first byte to the end of its headers (default %(default)s)",
    )
    conn.add_argument(
        "--body-timeout-s",
        type=_positive_float,
        default=limits.body_timeout_s,
        help="from the end of a request's headers to the end of its body (default %(default)s)",
    )
    conn.add_argument(
        "--keepalive-timeout-s",
        type=_positive_float,
        default=limits.keepalive_timeout_s,
        help="idle keep-alive connections are closed after this (default %(default)s)",
    )
    conn.add_argument(
        "--max-connections",
        type=_positive,
        default=limits.max_connections,
        help="open client connections at most; the longest idle are closed to make room"
        " (default %(default)s, lowered to fit the open-files limit)",
    )
    admission = Admission()
    conn.add_argument(
        "--max-in-flight",
        type=_positive,
        default=admission.max_limit,
        help="placing requests in flight at most; past it 503 overloaded (default %(default)s)",
    )
    conn.add_argument(
        "--min-in-flight",
        type=_positive,
        default=admission.min_limit,
        help="the in-flight bound never adapts below this (default %(default)s)",
    )
    conn.add_argument(
        "--shed-target-ms",
        type=_positive_float,
        default=admission.target_s * 1000,
        help="the bound shrinks while placing requests take longer on average, until"
        " their normal latency is known (then --shed-factor times it; default %(default)s)",
    )
    conn.add_argument(
        "--shed-factor",
        type=_positive_float,
        default=admission.factor,
        help="the bound shrinks while placing requests take longer than this many times their"
        " normal latency on average (default %(default)s)",
    )
    mon = parser.add_argument_group("metrics")
    mon.add_argument(
        "--metrics-token",
        default=os.environ.get("PYORDER_METRICS_TOKEN"),
        help="/metrics also answers 'Authorization: Bearer <token>' (default: only an admin's"
        " token on the API listener; env PYORDER_METRICS_TOKEN)",
    )
    mon.add_argument(
        "--metrics-listen",
        type=_host_port,
        metavar="HOST:PORT",
        help="also serve /metrics on this listener, without a token unless --metrics-token"
        " (bind a private address; with --workers N, worker k listens on PORT+k)",
    )
    pay = parser.add_argument_group("payments")
    pay.add_argument(
        "--payment-provider",
        action="append",
        type=_provider,
        default=[],
        metavar="SPEC",
        help="a payment provider: name=card1,url=http://127.0.0.1:9101,secret=whsec_..,"
        "methods=card+wallet[,api_key=..][,priority=0][,timeout_ms=100] (repeatable)",
    )
    pay.add_argument(
        "--payment-config",
        type=Path,
        help="a JSON file: {providers: [...], timeout_ms, breaker_threshold, ...}",
    )
    pay.add_argument("--provider-timeout-ms", type=int, help="per provider call (default 100)")
    pay.add_argument("--reconcile-interval-s", type=float, help="default 5")
    pay.add_argument("--breaker-threshold", type=int, help="failures that open a circuit (3)")
    pay.add_argument("--breaker-cooldown-s", type=float, help="before a probe (default 5)")
    ship = parser.add_argument_group("logistics")
    ship.add_argument(
        "--carrier",
        action="append",
        type=_carrier,
        default=[],
        metavar="SPEC",
        help="a carrier: name=swift,url=http://127.0.0.1:9201,secret=whsec_..[,api_key=..]"
        "[,priority=0][,timeout_ms=2000] (repeatable; new parcels go to the first by priority)",
    )
    ship.add_argument(
        "--auto-ship", action="store_true", help="book a paid order's parcels as soon as it is paid"
    )
    ship.add_argument("--carrier-timeout-ms", type=int, default=2000, help="per carrier call")
    hooks = parser.add_argument_group("webhooks (order events to merchants' endpoints)")
    defaults = WebhooksConfig()
    hooks.add_argument(
        "--webhook-timeout-ms",
        type=_positive,
        default=defaults.timeout_ms,
        help="per delivery attempt (default %(default)s)",
    )
    hooks.add_argument(
        "--webhook-retry-base-ms",
        type=_positive,
        default=defaults.base_delay_ms,
        help="wait after a first failed attempt, doubling after each (default %(default)s)",
    )
    hooks.add_argument(
        "--webhook-retry-max-ms",
        type=_positive,
        default=defaults.max_delay_ms,
        help="longest wait between attempts (default %(default)s)",
    )
    hooks.add_argument(
        "--webhook-max-attempts",
        type=_positive,
        default=defaults.max_attempts,
        help="attempts before an event is given up as failed (default %(default)s)",
    )
    parser.add_argument_group("returns").add_argument(
        "--returns-config",
        type=_returns_config,
        default=ReturnsConfig(),
        metavar="PATH",
        help="a JSON or TOML file: return windows, excluded categories, lightning-refund rules"
        " (docs/returns.md); default: 7 days, nothing excluded, the default thresholds",
    )
    risk = parser.add_argument_group("risk control at intake (docs/risk.md)")
    risk.add_argument(
        "--risk",
        action="store_true",
        help="assess every order: velocity features, the model, rules and lists (off: none)",
    )
    risk.add_argument(
        "--risk-model",
        type=Path,
        default=DEFAULT_MODEL,
        metavar="PATH",
        help="a LightGBM text model (default: the shipped one, pyorder/risk/models/default)",
    )
    risk.add_argument(
        "--risk-rules-only", action="store_true", help="no model: rules and lists only"
    )
    risk.add_argument(
        "--risk-on-failure",
        choices=FAILURE_OUTCOMES,
        default="allow",
        help="when the model cannot be loaded: allow (fail open: rules and lists still apply),"
        " review or block (fail closed); default %(default)s",
    )
    risk.add_argument(
        "--risk-sample-allowed",
        type=_share,
        default=0.01,
        metavar="SHARE",
        help="the share (0 to 1) of allowed orders whose features are kept, so that a fraud"
        " report, or none, labels them for training (docs/risk.md); default %(default)s",
    )
    risk.add_argument(
        "--review-hold-h",
        type=float,
        default=72,
        help="how long an order held for review keeps its units (default %(default)s h)",
    )
    risk.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a network whose X-Forwarded-For is believed (repeat for more)",
    )
    risk.add_argument(
        "--risk-config",
        type=Path,
        metavar="PATH",
        help="a TOML file of platform risk rules, lists and thresholds applied at start",
    )
    risk.add_argument(
        "--ip-regions",
        type=Path,
        metavar="PATH",
        help="a CSV of 'network,region' lines: the region of client IPs",
    )
    args = parser.parse_args(argv)
    risk_config = None
    if args.risk_config is not None:
        try:
            risk_config = config_file.read(args.risk_config, FEATURE_NAMES)
        except (OSError, RuleError) as e:
            parser.error(f"--risk-config {args.risk_config}: {e}")
    sys.setswitchinterval(args.gil_switch_ms / 1000)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = Config(
        data_dir=args.data_dir,
        database=args.database,
        commit_window_ms=args.commit_window_ms,
        payment_timeout_ms=int(args.payment_timeout_s * 1000),
        node=args.node,
        cluster=args.cluster,
        stock_leases=StockLeaseConfig(idle_s=args.stock_idle_s),
        idempotency_retention_ms=int(args.idempotency_retention_s * 1000),
        payments=_payments_config(args),
        logistics=LogisticsConfig(
            carriers=tuple(args.carrier),
            timeout_ms=args.carrier_timeout_ms,
            auto_ship=args.auto_ship,
        ),
        webhooks=WebhooksConfig(
            timeout_ms=args.webhook_timeout_ms,
            base_delay_ms=args.webhook_retry_base_ms,
            max_delay_ms=args.webhook_retry_max_ms,
            max_attempts=args.webhook_max_attempts,
        ),
        returns=args.returns_config,
        risk=RiskSettings(
            enabled=args.risk,
            model=None if args.risk_rules_only else args.risk_model,
            on_failure=args.risk_on_failure,
            sample_allowed=args.risk_sample_allowed,
            review_hold_ms=int(args.review_hold_h * 3_600_000),
            trusted_proxies=tuple(args.trusted_proxy),
            ip_regions=args.ip_regions,
        ),
        risk_config=risk_config,
    )
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        pass
    if args.min_in_flight > args.max_in_flight:
        parser.error("--min-in-flight must not exceed --max-in-flight")
    if args.workers > 1:
        raise SystemExit(_supervise(args, sys.argv[1:] if argv is None else argv))
    peer: socket.socket | None = None
    if config.cluster:  # bound before the node claims its number, which records its URL
        peer, peer_url = _peer_listener(args)
        config = replace(config, peer_url=peer_url)
    app = create_app(
        config,
        max_body_bytes=args.max_body_bytes,
        admission=Admission(
            max_limit=args.max_in_flight,
            min_limit=args.min_in_flight,
            target_s=args.shed_target_ms / 1000,
            factor=args.shed_factor,
        ),
        metrics_token=args.metrics_token,
    )
    raise_open_files_limit()
    limits = ConnectionLimits(
        header_timeout_s=args.header_timeout_s,
        body_timeout_s=args.body_timeout_s,
        keepalive_timeout_s=args.keepalive_timeout_s,
        max_connections=args.max_connections,
    ).fitted()
    store = args.database.split("@")[-1] if args.database else f"SQLite in {args.data_dir}/"
    print(f"pyorder listening on http://{args.host}:{args.port} (storage: {store})", flush=True)
    if limits.max_connections < args.max_connections:
        print(f"  at most {limits.max_connections} connections (open-files limit)", flush=True)
    if args.worker_of is None:  # a supervisor's workers leave it to the supervisor
        _print_token_hint(args)
    try:
        asyncio.run(_serve(app, args, limits, peer))
    except StorageError as exc:  # e.g. the database is served by another process: say why
        sys.stderr.write(f"pyorder-server: error: {exc}\n")
        raise SystemExit(1) from None


async def _serve(
    app: web.Application,
    args: argparse.Namespace,
    limits: ConnectionLimits,
    peer: socket.socket | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (or, for a ``--workers`` worker, its supervisor's death),
    drain for ``args.drain_s`` seconds (``pyorder.server.drain``), then stop accepting, let
    requests in flight finish (up to 10 s) and close the platform (``create_app``'s cleanup)."""
    runner = GuardedAppRunner(
        app,
        limits=limits,
        stats=app[METRICS].connections,
        admission=app[ADMISSION],
        http=app[METRICS].http,
        drain=app[DRAIN],
        shutdown_timeout=10,
        access_log=logging.getLogger("aiohttp.access") if args.access_log else None,
    )
    runners: list[web.AppRunner] = [runner]
    stop = Shutdown()
    loop = asyncio.get_running_loop()
    worker = args.worker_of is not None
    if worker:  # a supervisor may stop its workers while they start: stop after the start,
        stop.on_signals(loop)  # giving back what was leased (it kills one that hangs)
    await runner.setup()
    try:
        # SO_REUSEPORT: the supervisor's other workers share the port.
        await web.TCPSite(runner, args.host, args.port, backlog=1024, reuse_port=worker).start()
        if peer is not None:  # requests forwarded by the other nodes (same app, same checks)
            await web.SockSite(runner, peer, backlog=1024).start()
        if args.metrics_listen is not None:
            side = web.AppRunner(metrics_app(app, token=args.metrics_token), access_log=None)
            runners.insert(0, side)
            await side.setup()
            await web.TCPSite(side, *args.metrics_listen).start()
        # Stopped while it started: no balancer has sent it anything yet, nothing to drain.
        starting = stop.requested.is_set()
        orphan = None
        if worker:
            orphan = asyncio.create_task(_stop_when_orphaned(args.worker_of, stop))
        else:
            stop.on_signals(loop)
        await stop.requested.wait()
        if not starting:
            await stop.drain(app[DRAIN], args.drain_s)
        if orphan is not None:
            orphan.cancel()
    finally:
        for r in runners:
            await r.cleanup()


async def _stop_when_orphaned(supervisor: int, stop: Shutdown) -> None:
    """Stop gracefully once the supervisor is gone (killed), rather than serve unsupervised:
    the process is then re-parented, so its parent pid changes."""
    while os.getppid() == supervisor:
        await asyncio.sleep(0.5)
    logging.getLogger(__name__).warning("supervisor %d is gone; stopping", supervisor)
    stop.request()


def _supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``args.workers`` cluster workers on one port (``pyorder.server.workers``); returns
    the exit status. Refuses, in one line and with exit status 2 as a bad option, what several
    workers cannot share."""
    database = args.database or ""
    refusal = None
    if not database.startswith(("postgresql://", "postgres://")):
        refusal = "--workers N (N > 1) needs --database postgresql://...: SQLite is one process"
    elif args.port == 0:
        refusal = "--workers N (N > 1) needs a fixed --port: with 0 each worker binds its own"
    elif args.node is not None:
        refusal = "--node names one node number; each of several --workers leases its own"
    elif args.peer_listen is not None and args.peer_listen[1] != 0:
        refusal = "--peer-listen with --workers N takes port 0: each worker picks a free one"
    elif args.metrics_listen is not None and args.metrics_listen[1] + args.workers > 65536:
        refusal = "--metrics-listen: worker k listens on PORT+k, which passes 65535"
    if refusal is not None:
        sys.stderr.write(f"pyorder-server: error: {refusal}\n")
        return 2
    print(
        f"pyorder supervisor: {args.workers} workers on http://{args.host}:{args.port}"
        " (cluster mode, one node number each)",
        flush=True,
    )
    _print_token_hint(args)
    return Supervisor(argv, args.workers, metrics=args.metrics_listen, drain_s=args.drain_s).run()


def _print_token_hint(args: argparse.Namespace) -> None:
    print(
        f"  a development token: {_token_command()} --data-dir {args.data_dir} --role buyer"
        " --sub alice",
        flush=True,
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share from 0 to 1, got {text!r}")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _host_port_or_any(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (PORT 0: a free one), got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _peer_listener(args: argparse.Namespace) -> tuple[socket.socket, str]:
    """The listening socket for forwarded requests, and the URL other nodes reach it at."""
    host, port = args.peer_listen or (args.host, 0)
    try:
        sock = socket.create_server((host, port), family=_family(host), backlog=1024)
    except OSError as exc:
        sys.stderr.write(f"pyorder-server: error: --peer-listen {host}:{port}: {exc}\n")
        raise SystemExit(1) from None
    if args.peer_url:
        return sock, str(args.peer_url).rstrip("/")
    bound = sock.getsockname()[1]
    name = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return sock, f"http://[{name}]:{bound}" if ":" in name else f"http://{name}:{bound}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _provider(text: str) -> ProviderConfig:
    try:
        return parse_provider(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _carrier(text: str) -> CarrierConfig:
    try:
        return parse_carrier(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _returns_config(text: str) -> ReturnsConfig:
    try:
        return load_returns_config(Path(text))
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _payments_config(args: argparse.Namespace) -> PaymentsConfig:
    extra: list[ProviderConfig] = args.payment_provider
    if args.payment_config is not None:
        try:
            config = load_config(args.payment_config, extra)
        except (OSError, ValueError) as exc:  # as argparse refuses a bad option: exit 2
            sys.stderr.write(f"pyorder-server: error: --payment-config: {exc}\n")
            raise SystemExit(2) from None
    else:
        config = PaymentsConfig(providers=tuple(extra))
    overrides = {
        "timeout_ms": args.provider_timeout_ms,
        "reconcile_interval_s": args.reconcile_interval_s,
        "breaker_threshold": args.breaker_threshold,
        "breaker_cooldown_s": args.breaker_cooldown_s,
    }
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def _token_command() -> str:
    """How a person runs ``pyorder-token``: by its path when this Python is a virtual
    environment they have not activated (scripts/serve.sh runs the server from .venv), else by
    name."""
    beside = Path(sys.executable).parent / "pyorder-token"
    activated = os.environ.get("VIRTUAL_ENV") == sys.prefix
    if sys.prefix == sys.base_prefix or activated or not beside.exists():
        return "pyorder-token"
    return os.path.relpath(beside) if beside.is_relative_to(Path.cwd()) else str(beside)


def mint(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="pyorder-token", description="Mint a development bearer token."
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("PYORDER_DATA_DIR", "data"))
    )
    parser.add_argument("--role", choices=[r.value for r in Role], required=True)
    parser.add_argument("--sub", required=True, help="the principal's id (subject)")
    parser.add_argument("--ttl-s", type=int, default=24 * 3600)
    parser.add_argument(
        "--account-created",
        type=int,
        default=None,
        metavar="UNIX_S",
        help="when the buyer's account was made (UTC seconds): the account_created claim,"
        " which risk control reads the account's age from",
    )
    args = parser.parse_args(argv)
    issuer = TokenIssuer(load_or_create_secret(args.data_dir))
    token = issuer.mint(Role(args.role), args.sub, args.ttl_s, args.account_created)
    sys.stdout.write(token + "\n")


if __name__ == "__main__":
    serve()

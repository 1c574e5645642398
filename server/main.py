"""Command line: ``pyorder-server`` runs the service; ``pyorder-token`` mints development tokens."""

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from pyorder.auth import Role, TokenIssuer, load_or_create_secret
from pyorder.platform import Config
from server.app import DEFAULT_MAX_BODY, create_app


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
    parser.add_argument("--node", type=int, default=int(os.environ.get("PYORDER_NODE", "0")))
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
    args = parser.parse_args(argv)
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
        idempotency_retention_ms=int(args.idempotency_retention_s * 1000),
    )
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        pass
    app = create_app(config, max_body_bytes=args.max_body_bytes)
    store = args.database.split("@")[-1] if args.database else f"SQLite in {args.data_dir}/"
    print(f"pyorder listening on http://{args.host}:{args.port} (storage: {store})", flush=True)
    print(
        f"  a development token: pyorder-token --data-dir {args.data_dir} --role buyer --sub alice",
        flush=True,
    )
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=None,
        shutdown_timeout=10,
        access_log=logging.getLogger("aiohttp.access") if args.access_log else None,
    )


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
    args = parser.parse_args(argv)
    issuer = TokenIssuer(load_or_create_secret(args.data_dir))
    sys.stdout.write(issuer.mint(Role(args.role), args.sub, args.ttl_s) + "\n")


if __name__ == "__main__":
    serve()

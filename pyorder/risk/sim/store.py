"""The data set on disk, and back.

A directory of three files:

- ``events.jsonl.gz``: the stream, one JSON object per line in stream order, gzip'd.
  ``"kind"`` is ``"order"`` or ``"payment"``; the other keys are exactly the fields of
  ``OrderAttempt`` or ``PaymentAttempt`` (``pyorder/risk/events.py``), a field that is None
  left out, ``agent`` as its integer. Nothing else: no truth, no generator variable.
- ``labels.json``: columns per order (index = the order's position among the stream's
  orders): ``fraud`` (0/1), ``scenario``, ``label_at_ms`` (null: never); and per payment,
  ``payment_order`` (the index of the order it pays).
- ``meta.json``: the format version, the configuration and the counts.

The same simulation always writes the same bytes (no time stamp in the gzip header)."""

import dataclasses
import gzip
from pathlib import Path
from typing import Any

import orjson

from pyorder.risk.events import AgentClass, OrderAttempt, PaymentAttempt
from pyorder.risk.sim.config import SimConfig
from pyorder.risk.sim.stream import Event, Labels, Simulation

FORMAT = 1
EVENTS, LABELS, META = "events.jsonl.gz", "labels.json", "meta.json"
ORDER_FIELDS = tuple(f.name for f in dataclasses.fields(OrderAttempt))
PAYMENT_FIELDS = tuple(f.name for f in dataclasses.fields(PaymentAttempt))
_CHUNK = 10_000


def _row(event: Event) -> dict[str, Any]:
    if isinstance(event, OrderAttempt):
        row: dict[str, Any] = {"kind": "order"}
        names = ORDER_FIELDS
    else:
        row = {"kind": "payment"}
        names = PAYMENT_FIELDS
    for name in names:
        value = getattr(event, name)
        if value is not None:
            row[name] = value
    return row


def write(simulation: Simulation, directory: Path) -> None:
    """Write the data set into ``directory`` (made if missing; its files replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    events = simulation.events
    with (
        (directory / EVENTS).open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as out,
    ):
        for i in range(0, len(events), _CHUNK):
            out.write(
                b"".join(
                    orjson.dumps(_row(e), option=orjson.OPT_APPEND_NEWLINE)
                    for e in events[i : i + _CHUNK]
                )
            )
    labels = simulation.labels
    (directory / LABELS).write_bytes(
        orjson.dumps(
            {
                "fraud": [int(f) for f in labels.fraud],
                "scenario": labels.scenario,
                "label_at_ms": labels.label_at_ms,
                "payment_order": simulation.payment_order,
            }
        )
    )
    orders = len(labels.fraud)
    meta = {
        "format": FORMAT,
        "config": dataclasses.asdict(simulation.config),
        "orders": orders,
        "payments": len(events) - orders,
        "fraud_orders": sum(labels.fraud),
    }
    (directory / META).write_bytes(
        orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )


def read_events(path: Path) -> list[Event]:
    """The stream of an ``events.jsonl.gz``, as the schema's dataclasses."""
    events: list[Event] = []
    with gzip.open(path, "rb") as lines:
        for line in lines:
            row = orjson.loads(line)
            if row.pop("kind") == "order":
                row["agent"] = AgentClass(row["agent"])
                events.append(OrderAttempt(**row))
            else:
                events.append(PaymentAttempt(**row))
    return events


def load(directory: Path) -> Simulation:
    """Read back a data set written by ``write``."""
    meta = orjson.loads((directory / META).read_bytes())
    if meta["format"] != FORMAT:
        raise ValueError(f"{directory}: format {meta['format']}, this reader knows {FORMAT}")
    columns = orjson.loads((directory / LABELS).read_bytes())
    labels = Labels(
        fraud=[bool(f) for f in columns["fraud"]],
        scenario=columns["scenario"],
        label_at_ms=columns["label_at_ms"],
    )
    return Simulation(
        SimConfig(**meta["config"]),
        read_events(directory / EVENTS),
        labels,
        columns["payment_order"],
    )

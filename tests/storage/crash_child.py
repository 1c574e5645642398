"""Child process of the durability test: commits batches of orders in a loop and prints the
ids of each batch as soon as ``commit`` returns, until it is killed.

    cd tests && python -m storage.crash_child sqlite PATH | postgres DSN
"""

import asyncio
import sys

from pyorder.model import WriteBatch
from pyorder.storage.base import Store
from pyorder.storage.postgres import PostgresStore
from pyorder.storage.sqlite import SqliteStore

from .records import catalog, order

BATCH = 50


async def main(kind: str, where: str) -> None:
    store: Store = SqliteStore(where) if kind == "sqlite" else PostgresStore(where)
    await store.open()
    await store.commit(catalog())
    print("ready", flush=True)
    next_id = 1
    while True:  # until SIGKILL
        ids = range(next_id, next_id + BATCH)
        await store.commit(WriteBatch(orders=[order(i) for i in ids]))
        print(ids.start, ids.stop - 1, flush=True)
        next_id = ids.stop


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

"""The event queue on a live PostgreSQL (a throwaway cluster started for this module): the migrations, and
two nodes leasing the same function's events concurrently without ever taking the same event (SKIP
LOCKED). Skipped where PostgreSQL's server binaries or psycopg are missing."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nimbus.control.db import make_engine, migrate
from nimbus.invoke.queue import Completion, NewEvent, PostgresEventQueue, make_queue, now_ms
from tests.conftest import free_port


def _bin(name: str) -> str | None:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    return found


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    pytest.importorskip("psycopg")
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Not under pytest's temp dir: the postgres user (when running as root) cannot enter that.
    root = Path(tempfile.mkdtemp(prefix="nimbus-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a postgres user")
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)
    options = f"-p {port} -k {root} -h 127.0.0.1 -c fsync=off"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    migrate(engine)  # every feature's migration must run on PostgreSQL too
    yield engine
    engine.dispose()


@pytest.fixture
async def nodes(engine: Engine) -> AsyncIterator[tuple[PostgresEventQueue, PostgresEventQueue]]:
    first, second = make_queue(engine), make_queue(engine)
    assert isinstance(first, PostgresEventQueue) and isinstance(second, PostgresEventQueue)
    second.owner = first.owner + "-b"
    await first.start()
    await second.start()
    yield first, second
    await first.stop()
    await second.stop()


async def test_two_nodes_never_lease_the_same_event(nodes: tuple[PostgresEventQueue, PostgresEventQueue],
                                                    tmp_path: Path) -> None:
    a, b = nodes
    fn = f"pg-{tmp_path.name}"[:60]
    await a.enqueue([NewEvent(f"r{i}", fn, None, b"{}") for i in range(60)])
    taken: list[int] = []
    for _ in range(4):
        left, right = await asyncio.gather(a.lease(fn, 10, 60_000), b.lease(fn, 10, 60_000))
        ids = [e.id for e in left + right]
        assert len(ids) == len(set(ids))
        taken += ids
        await asyncio.gather(a.complete([Completion(e) for e in left]), b.complete([Completion(e) for e in right]))
    assert len(taken) == len(set(taken))
    rest = await a.lease(fn, 100, 60_000)
    assert len(taken) + len(rest) == 60


async def test_retry_later_and_lease_expiry(nodes: tuple[PostgresEventQueue, PostgresEventQueue],
                                            tmp_path: Path) -> None:
    a, b = nodes
    fn = f"pgx-{tmp_path.name}"[:60]
    await a.enqueue([NewEvent("r1", fn, None, b'{"x": 1}')])
    (leased,) = await a.lease(fn, 1, 50)  # node a dies holding it
    await asyncio.sleep(0.1)
    (again,) = await b.lease(fn, 1, 60_000)  # expired: node b takes it
    assert again.id == leased.id and again.lease_owner == b.owner
    again.attempts = 1
    await b.complete([Completion(again, retry_at_ms=now_ms() + 100_000)])
    (stats,) = await b.stats(fn)
    assert (stats.depth, stats.in_flight, stats.delayed) == (1, 0, 1)
    assert await a.lease(fn, 1, 60_000) == []

"""The log store on a real (temporary, migrated) SQLite database: batching, flush, queries, tokens,
retention."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from nimbus.observe.logstore import DAY_MS, LogStore, now_ms

G = "/aws/lambda/fn"
S1 = "2026/01/01/[$LATEST]" + "a" * 32
S2 = "2026/01/01/[$LATEST]" + "b" * 32


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'nimbus.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: Engine, tmp_path: Path) -> LogStore:
    return LogStore(Settings(data_dir=tmp_path, log_retention_days=30), engine)


def fill(store: LogStore, stream: str, stamps: list[int], prefix: str = "m") -> None:
    store.append(G, stream, [(ts, f"{prefix}{ts}") for ts in stamps])
    store.flush_sync()


def messages(events: list[dict[str, object]]) -> list[object]:
    return [e["message"] for e in events]


# The async tests below start the store, whose retention sweep runs at once: their events are recent.


async def test_append_only_queues_until_the_writer_runs(store: LogStore) -> None:
    now = now_ms()
    store.append(G, S1, [(now, "a"), (now + 1, "b")])
    assert store.describe_log_groups()[0] == []  # nothing written on the caller's path
    await store.start()
    try:
        for _ in range(200):  # the writer batches on its own within its interval
            if store.describe_log_groups()[0]:
                break
            await asyncio.sleep(0.01)
        groups, _ = store.describe_log_groups()
        assert [g["logGroupName"] for g in groups] == [G]
    finally:
        await store.stop()


async def test_stop_flushes_everything(store: LogStore) -> None:
    await store.start()
    now = now_ms()
    for i in range(50):
        store.append(G, S1, [(now + i, f"line {i}")])
    await store.stop()
    page = store.get_log_events(G, S1, start_from_head=True)
    assert messages(page.events) == [f"line {i}" for i in range(50)]


async def test_flush_gives_read_your_writes(store: LogStore) -> None:
    await store.start()
    try:
        store.append(G, S1, [(now_ms(), "x")])
        page = await store.run(store.get_log_events, G, S1)
        assert messages(page.events) == ["x"]
    finally:
        await store.stop()


def test_too_many_pending_lines_are_dropped_not_queued(engine: Engine, tmp_path: Path) -> None:
    store = LogStore(Settings(data_dir=tmp_path), engine, max_pending_lines=3)
    store.append(G, S1, [(1, "a"), (2, "b"), (3, "c")])
    store.append(G, S1, [(4, "d")])
    assert store.dropped_lines == 1
    store.flush_sync()
    assert len(store.get_log_events(G, S1).events) == 3


def test_groups_and_streams_are_created_with_stats(store: LogStore) -> None:
    fill(store, S1, [300, 100, 200])
    fill(store, S1, [50])
    groups, token = store.describe_log_groups()
    assert token is None
    (group,) = groups
    assert group["logGroupName"] == G
    assert group["retentionInDays"] == 30
    assert group["arn"] == f"arn:aws:logs:us-east-1:000000000000:log-group:{G}:*"
    assert group["storedBytes"] > 0
    streams, _ = store.describe_log_streams(G)
    (stream,) = streams
    assert stream["logStreamName"] == S1
    assert (stream["firstEventTimestamp"], stream["lastEventTimestamp"]) == (50, 300)
    assert stream["lastIngestionTime"] >= stream["creationTime"]


def test_describe_log_groups_prefix_pattern_and_paging(store: LogStore) -> None:
    for name in ["/aws/lambda/b", "/aws/lambda/a", "/other/x", "/aws/lambda/c"]:
        store.create_log_group(name)
    names = [g["logGroupName"] for g in store.describe_log_groups(prefix="/aws/lambda/")[0]]
    assert names == ["/aws/lambda/a", "/aws/lambda/b", "/aws/lambda/c"]
    page1, token = store.describe_log_groups(limit=3)
    assert token is not None
    page2, token2 = store.describe_log_groups(limit=3, next_token=token)
    assert token2 is None
    assert [g["logGroupName"] for g in page1 + page2] == ["/aws/lambda/a", "/aws/lambda/b", "/aws/lambda/c", "/other/x"]
    assert [g["logGroupName"] for g in store.describe_log_groups(pattern="ther")[0]] == ["/other/x"]
    assert store.describe_log_groups(pattern="THER")[0] == []  # case-sensitive like CloudWatch


def test_create_existing_group_conflicts_and_delete_unknown_is_not_found(store: LogStore) -> None:
    store.create_log_group(G)
    with pytest.raises(ResourceConflict):
        store.create_log_group(G)
    with pytest.raises(ResourceNotFound):
        store.delete_log_group("/nope")
    with pytest.raises(ResourceNotFound):
        store.get_log_events("/nope", S1)
    with pytest.raises(ResourceNotFound):
        store.get_log_events(G, "missing")


def test_delete_group_removes_everything_and_logging_recreates_it(store: LogStore) -> None:
    fill(store, S1, [1, 2])
    store.delete_log_group(G)
    assert store.describe_log_groups()[0] == []
    fill(store, S1, [3])  # a function still running keeps logging: the group comes back
    assert messages(store.get_log_events(G, S1).events) == ["m3"]


def test_describe_log_streams_orders(store: LogStore) -> None:
    fill(store, S2, [10])
    fill(store, S1, [20])
    by_name = [s["logStreamName"] for s in store.describe_log_streams(G)[0]]
    assert by_name == [S1, S2]
    assert [s["logStreamName"] for s in store.describe_log_streams(G, descending=True)[0]] == [S2, S1]
    by_time = store.describe_log_streams(G, order_by="LastEventTime", descending=True)[0]
    assert [s["logStreamName"] for s in by_time] == [S1, S2]
    assert [s["logStreamName"] for s in store.describe_log_streams(G, prefix=S2[:-3])[0]] == [S2]
    with pytest.raises(InvalidParameterValue):
        store.describe_log_streams(G, prefix="x", order_by="LastEventTime")
    first, token = store.describe_log_streams(G, limit=1)
    rest, token2 = store.describe_log_streams(G, limit=1, next_token=token)
    assert token is not None and token2 is None
    assert [s["logStreamName"] for s in first + rest] == [S1, S2]


def test_get_log_events_default_is_the_newest_page_in_ascending_order(store: LogStore) -> None:
    fill(store, S1, list(range(1, 11)))
    page = store.get_log_events(G, S1, limit=3)
    assert messages(page.events) == ["m8", "m9", "m10"]
    assert page.next_forward_token.startswith("f/")
    assert page.next_backward_token.startswith("b/")


def test_get_log_events_paginates_forward_to_the_end(store: LogStore) -> None:
    fill(store, S1, list(range(1, 8)))
    seen: list[object] = []
    page = store.get_log_events(G, S1, limit=3, start_from_head=True)
    seen += messages(page.events)
    token = page.next_forward_token
    while True:
        page = store.get_log_events(G, S1, limit=3, next_token=token)
        seen += messages(page.events)
        if page.next_forward_token == token:  # CloudWatch's end-of-stream signal
            break
        token = page.next_forward_token
    assert seen == [f"m{i}" for i in range(1, 8)]
    # New events appear after the end token.
    fill(store, S1, [100])
    assert messages(store.get_log_events(G, S1, next_token=token).events) == ["m100"]


def test_get_log_events_paginates_backward(store: LogStore) -> None:
    fill(store, S1, list(range(1, 8)))
    page = store.get_log_events(G, S1, limit=3)
    assert messages(page.events) == ["m5", "m6", "m7"]
    page = store.get_log_events(G, S1, limit=3, next_token=page.next_backward_token)
    assert messages(page.events) == ["m2", "m3", "m4"]
    page = store.get_log_events(G, S1, limit=3, next_token=page.next_backward_token)
    assert messages(page.events) == ["m1"]
    end = page.next_backward_token
    page = store.get_log_events(G, S1, limit=3, next_token=end)
    assert page.events == [] and page.next_backward_token == end


def test_get_log_events_time_range_and_ties(store: LogStore) -> None:
    store.append(G, S1, [(5, "a"), (5, "b"), (6, "c"), (9, "d")])
    store.flush_sync()
    # startTime inclusive, endTime exclusive; same-timestamp events keep their arrival order.
    assert messages(store.get_log_events(G, S1, start_time=5, end_time=9).events) == ["a", "b", "c"]
    page = store.get_log_events(G, S1, limit=1, start_from_head=True)
    page = store.get_log_events(G, S1, limit=1, next_token=page.next_forward_token)
    assert messages(page.events) == ["b"]


def test_get_log_events_empty_stream_tokens_are_never_null(store: LogStore) -> None:
    store.create_log_group(G)
    store.create_log_stream(G, S1)
    page = store.get_log_events(G, S1)
    assert page.events == [] and page.next_forward_token and page.next_backward_token
    fill(store, S1, [7])
    assert messages(store.get_log_events(G, S1, next_token=page.next_forward_token).events) == ["m7"]


def test_bad_tokens_are_invalid_parameters(store: LogStore) -> None:
    fill(store, S1, [1])
    for token in ["garbage", "f/123", "x/" + "0" * 40]:
        with pytest.raises(InvalidParameterValue):
            store.get_log_events(G, S1, next_token=token)
        with pytest.raises(InvalidParameterValue):
            store.filter_log_events(G, next_token=token)
    with pytest.raises(InvalidParameterValue):
        store.describe_log_groups(next_token="f/1")


def test_filter_interleaves_streams_by_time(store: LogStore) -> None:
    fill(store, S1, [1, 3, 5], prefix="a")
    fill(store, S2, [2, 4, 6], prefix="b")
    page = store.filter_log_events(G)
    assert messages(page.events) == ["a1", "b2", "a3", "b4", "a5", "b6"]
    assert page.next_token is None
    assert page.events[1]["logStreamName"] == S2
    assert len({e["eventId"] for e in page.events}) == 6
    desc = store.filter_log_events(G, start_from_head=False)
    assert messages(desc.events) == ["b6", "a5", "b4", "a3", "b2", "a1"]


def test_filter_by_streams_time_and_pattern(store: LogStore) -> None:
    store.append(G, S1, [(1, "INFO start"), (2, "ERROR boom"), (3, "WARN slow"), (4, "error lower")])
    store.append(G, S2, [(5, "ERROR other stream")])
    store.flush_sync()
    assert messages(store.filter_log_events(G, filter_pattern="ERROR").events) == ["ERROR boom", "ERROR other stream"]
    assert messages(store.filter_log_events(G, filter_pattern="?ERROR ?WARN", stream_names=[S1]).events) == [
        "ERROR boom",
        "WARN slow",
    ]
    assert messages(store.filter_log_events(G, stream_prefix=S2[:-1]).events) == ["ERROR other stream"]
    assert messages(store.filter_log_events(G, start_time=2, end_time=3).events) == ["ERROR boom", "WARN slow"]
    assert store.filter_log_events(G, stream_names=["nope"]).events == []
    with pytest.raises(InvalidParameterValue):
        store.filter_log_events(G, stream_names=[S1], stream_prefix="x")
    with pytest.raises(InvalidParameterValue):
        store.filter_log_events(G, filter_pattern="[a, b")


def test_filter_like_wildcards_in_terms_are_literal(store: LogStore) -> None:
    store.append(G, S1, [(1, "100% done"), (2, "1000 done"), (3, "a_b"), (4, "axb")])
    store.flush_sync()
    assert messages(store.filter_log_events(G, filter_pattern='"100%"').events) == ["100% done"]
    assert messages(store.filter_log_events(G, filter_pattern="a_b").events) == ["a_b"]


def test_filter_pagination_has_a_token_only_when_more_remain(store: LogStore) -> None:
    fill(store, S1, list(range(1, 6)))
    fill(store, S2, list(range(6, 11)))
    seen: list[object] = []
    token = None
    pages = 0
    while True:
        page = store.filter_log_events(G, limit=4, next_token=token)
        seen += messages(page.events)
        pages += 1
        if page.next_token is None:
            break
        token = page.next_token
    assert seen == [f"m{i}" for i in range(1, 11)]
    assert pages == 3
    exact = store.filter_log_events(G, limit=10)
    assert exact.next_token is None and len(exact.events) == 10


def test_filter_descending_pagination_keeps_direction(store: LogStore) -> None:
    fill(store, S1, list(range(1, 6)))
    page = store.filter_log_events(G, limit=2, start_from_head=False)
    assert messages(page.events) == ["m5", "m4"]
    page = store.filter_log_events(G, limit=2, next_token=page.next_token, start_from_head=True)
    assert messages(page.events) == ["m3", "m2"]


def test_filter_scan_budget_returns_partial_pages(store: LogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import nimbus.observe.logstore as mod

    monkeypatch.setattr(mod, "FILTER_CHUNK", 2)
    monkeypatch.setattr(mod, "FILTER_SCAN_BUDGET", 4)
    store.append(G, S1, [(i, "noise") for i in range(1, 10)] + [(10, "needle")])
    store.flush_sync()
    found: list[object] = []
    token = None
    for _ in range(10):
        page = store.filter_log_events(G, filter_pattern="%needle%", next_token=token)
        found += messages(page.events)
        token = page.next_token
        if token is None:
            break
    assert found == ["needle"]


def test_retention_deletes_old_events(store: LogStore) -> None:
    now = now_ms()
    store.append(G, S1, [(now - 40 * DAY_MS, "old"), (now - DAY_MS, "recent")])
    store.append("/keep", S1, [(now - 400 * DAY_MS, "ancient")])
    store.flush_sync()
    store.put_retention_policy("/keep", None)
    assert store.apply_retention(now) == 1
    assert messages(store.get_log_events(G, S1).events) == ["recent"]
    assert messages(store.get_log_events("/keep", S1).events) == ["ancient"]
    store.put_retention_policy(G, 1)
    assert store.describe_log_groups(prefix=G)[0][0]["retentionInDays"] == 1
    assert store.apply_retention(now + 2 * DAY_MS) == 1
    with pytest.raises(InvalidParameterValue):
        store.put_retention_policy(G, 2)
    with pytest.raises(ResourceNotFound):
        store.put_retention_policy("/nope", 1)


def test_no_default_retention_when_setting_is_zero(engine: Engine, tmp_path: Path) -> None:
    store = LogStore(Settings(data_dir=tmp_path, log_retention_days=0), engine)
    store.create_log_group(G)
    assert "retentionInDays" not in store.describe_log_groups()[0][0]


def test_put_log_events_rejects_too_old_and_too_new(store: LogStore) -> None:
    store.create_log_group(G)
    store.create_log_stream(G, S1)
    with pytest.raises(ResourceConflict):
        store.create_log_stream(G, S1)
    now = now_ms()
    rejected = store.put_log_events(G, S1, [(now - 60 * DAY_MS, "old"), (now, "ok"), (now + DAY_MS, "future")])
    assert rejected == {"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 2}
    assert messages(store.get_log_events(G, S1).events) == ["ok"]
    with pytest.raises(ResourceNotFound):
        store.put_log_events(G, "missing", [(now, "x")])
    store.delete_log_stream(G, S1)
    assert store.describe_log_streams(G)[0] == []


def test_retention_deletes_in_batches(store: LogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import nimbus.observe.logstore as mod

    monkeypatch.setattr(mod, "RETENTION_BATCH", 2)
    now = now_ms()
    store.append(G, S1, [(now - 31 * DAY_MS + i, f"old {i}") for i in range(5)] + [(now, "new")])
    store.flush_sync()
    assert store.apply_retention(now) == 5
    assert messages(store.get_log_events(G, S1).events) == ["new"]

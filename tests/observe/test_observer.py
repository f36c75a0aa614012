"""The observer fans invocations out to metrics, metering and the recent-invocations list."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.control.specs import VersionSpec
from nimbus.observe import observer as observer_module
from nimbus.observe.observer import Observer, qualifier_of
from nimbus.observe.tracing import Tracer
from nimbus.sandbox.types import InvokeRequest, InvokeResult, ProvisionedStats

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


def spec() -> VersionSpec:
    return VersionSpec(
        function_name="fn", version="$LATEST", function_arn=ARN, runtime="python3.12", handler="app.handler",
        memory_size=512, timeout=3, environment={}, ephemeral_storage=512, architectures=("arm64",), layers=(),
        logging_config={}, code_sha256="0" * 64, code_dir=Path("/nonexistent"), revision_id="r",
    )


def make(tmp_path: Path, **kw: object) -> Observer:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    return Observer(Settings(data_dir=tmp_path, **kw), engine, tracer=Tracer(None))  # type: ignore[arg-type]


def test_qualifier_of() -> None:
    assert qualifier_of(ARN) == "$LATEST"
    assert qualifier_of(ARN + ":live") == "live"
    assert qualifier_of(ARN + ":3") == "3"


def test_record_counts_meters_and_lists(tmp_path: Path) -> None:
    obs = make(tmp_path)
    ok = InvokeResult(b"{}", None, None, [], 10.2, 40, 99.5, "s", "e")
    bad = InvokeResult(b"{}", "Unhandled", "KeyError", [], 1.0, 40, None, "s", "e")
    obs.record(spec(), InvokeRequest("r1", b"", 0, ARN), ok)
    obs.record(spec(), InvokeRequest("r2", b"", 0, ARN + ":live"), bad)
    obs.throttled("fn", None)
    assert obs.metrics.totals("fn") == {"invocations": 2, "errors": 1, "throttles": 1, "cold_starts": 1,
                                        "duration_ms_sum": 11.2}
    assert set(obs.metrics.qualifiers("fn")) == {"$LATEST", "live"}
    recent = obs.recent("fn")
    assert [r["requestId"] for r in recent] == ["r2", "r1"]
    assert recent[0]["status"] == "error" and recent[0]["errorType"] == "KeyError"
    assert recent[1]["billedMs"] == 110 and recent[1]["qualifier"] == "$LATEST"
    obs.meter.flush_sync()
    (usage,) = obs.meter.usage(0, 2**40)
    assert (usage.architecture, usage.memory_mb, usage.requests, usage.billed_ms) == ("arm64", 512, 2, 111)


def test_disabled_observer_records_nothing(tmp_path: Path) -> None:
    obs = make(tmp_path, metrics=False)
    obs.record(spec(), InvokeRequest("r1", b"", 0, ARN), InvokeResult(b"{}", None, None, [], 1.0, 1, None, "s", "e"))
    obs.throttled("fn", "$LATEST")
    assert obs.metrics.functions() == [] and obs.recent("fn") == []


async def test_provisioned_environments_are_metered_while_allocated(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr(observer_module, "SAMPLE_INTERVAL", 0.05)  # type: ignore[attr-defined]
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    obs = Observer(Settings(data_dir=tmp_path), engine, tracer=Tracer(None),
                   provisioned=lambda: [ProvisionedStats("fn", "1", 2, 0, 1024, "x86_64")])
    await obs.start()
    await asyncio.sleep(0.3)
    await obs.stop()
    (usage,) = obs.meter.usage(0, 2**40)
    assert usage.requests == 0 and usage.provisioned_ms >= 2 * 200  # two environments for >= 0.2 s


def test_snapstart_restore_is_measured_and_billed(tmp_path: Path) -> None:
    obs = make(tmp_path)
    restored = InvokeResult(b"{}", None, None, [], 2.0, 40, None, "s", "e",
                            extra_report={"Restore Duration": "30.50 ms", "Billed Restore Duration": "31 ms"})
    obs.record(spec(), InvokeRequest("r1", b"", 0, ARN), restored)
    stats = obs.metrics.stats("fn", "$LATEST")
    assert stats.restore.count == 1 and stats.restore.total == 30.5 and stats.cold_starts == 1
    assert stats.init.count == 0
    assert obs.recent("fn")[0]["billedMs"] == 33  # ceil(2.0 + 30.5)

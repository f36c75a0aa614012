"""Prometheus metrics of one process: counters in plain ints, exported by a collector at scrape time."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from nimbus.observe.metrics import Metrics, Sample


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_invocations_errors_throttles_and_duration_histogram() -> None:
    m = Metrics()
    s = m.stats("fn", "$LATEST")
    m.invocation(s, 3.2, error=False, init_ms=120.0)
    m.invocation(s, 40.0, error=True)
    m.invocation(m.stats("fn", "live"), 0.5, error=False)
    m.throttle("fn", "$LATEST")
    got = scrape(m)
    latest = (("function", "fn"), ("qualifier", "$LATEST"))
    assert got[("nimbus_invocations_total", latest)] == 2
    assert got[("nimbus_errors_total", latest)] == 1
    assert got[("nimbus_throttles_total", latest)] == 1
    assert got[("nimbus_cold_starts_total", latest)] == 1
    assert got[("nimbus_invocations_total", (("function", "fn"), ("qualifier", "live")))] == 1
    assert got[("nimbus_duration_seconds_count", latest)] == 2
    assert abs(got[("nimbus_duration_seconds_sum", latest)] - 0.0432) < 1e-9
    assert got[("nimbus_duration_seconds_bucket", (*latest[:1], ("le", "0.005"), latest[1]))] == 1
    assert got[("nimbus_duration_seconds_bucket", (*latest[:1], ("le", "0.05"), latest[1]))] == 2
    assert got[("nimbus_duration_seconds_bucket", (*latest[:1], ("le", "+Inf"), latest[1]))] == 2
    assert got[("nimbus_init_duration_seconds_count", latest)] == 1
    assert got[("nimbus_init_duration_seconds_bucket", (*latest[:1], ("le", "0.1"), latest[1]))] == 0
    assert got[("nimbus_init_duration_seconds_bucket", (*latest[:1], ("le", "0.25"), latest[1]))] == 1


def test_async_and_destination_counters() -> None:
    m = Metrics()
    m.async_event_age("fn", 2.5)
    m.async_event_dropped("fn", "EventAgeExceeded")
    m.destination_failure("fn", "sqs")
    m.dead_letter_error("fn")
    got = scrape(m)
    assert got[("nimbus_async_event_age_seconds_count", (("function", "fn"),))] == 1
    assert got[("nimbus_async_events_dropped_total", (("function", "fn"), ("reason", "EventAgeExceeded")))] == 1
    assert got[("nimbus_destination_delivery_failures_total", (("destination_type", "sqs"), ("function", "fn")))] == 1
    assert got[("nimbus_dead_letter_errors_total", (("function", "fn"),))] == 1


def test_sources_are_read_at_scrape_time_and_a_broken_one_is_skipped() -> None:
    m = Metrics()
    depth = {"fn": 3}
    m.add_source(lambda: [Sample("nimbus_async_queue_depth", "depth", ("function",),
                                 [((k,), float(v)) for k, v in depth.items()])])

    def broken() -> list[Sample]:
        raise RuntimeError("boom")

    m.add_source(broken)
    assert scrape(m)[("nimbus_async_queue_depth", (("function", "fn"),))] == 3
    depth["fn"] = 7
    assert scrape(m)[("nimbus_async_queue_depth", (("function", "fn"),))] == 7


def test_each_instance_has_its_own_registry_not_the_global_one() -> None:
    a, b = Metrics(), Metrics()
    a.invocation(a.stats("only-a", "$LATEST"), 1.0, error=False)
    assert b"only-a" in a.exposition()
    assert b"only-a" not in b.exposition()
    assert REGISTRY.get_sample_value("nimbus_invocations_total", {"function": "only-a", "qualifier": "$LATEST"}) is None


def test_history_gives_rates_between_samples() -> None:
    m = Metrics()
    s = m.stats("fn", "$LATEST")
    m.sample(now=100.0)
    for _ in range(10):
        m.invocation(s, 2.0, error=False)
    m.throttle("fn", "$LATEST")
    m.sample(now=102.0)
    (point,) = m.history("fn")["fn"]
    assert point == {"t": 102.0, "invocations": 5.0, "errors": 0.0, "throttles": 0.5, "avg_ms": 2.0}
    assert m.totals("fn")["invocations"] == 10
    assert m.qualifiers("fn")["$LATEST"]["throttles"] == 1
    m.forget("fn")
    assert m.functions() == []


async def test_platform_gauges_from_the_sandbox_concurrency_and_async_queue() -> None:
    from types import SimpleNamespace

    from nimbus.observe.collector import PlatformCollector, Readers
    from nimbus.sandbox.types import EnvironmentStats, ProvisionedStats

    async def queue_stats() -> list[Any]:
        return [SimpleNamespace(function_name="fn", depth=3, oldest_enqueued_ms=None)]

    metrics = Metrics()
    metrics.throttle("idle", "$LATEST")  # seen since the start, nothing running now
    collector = PlatformCollector(metrics, Readers(
        in_flight=lambda: {"fn": 2},
        account_limit=1000,
        environments=lambda: [EnvironmentStats("fn", "$LATEST", "e1", True, 30),
                              EnvironmentStats("fn", "1", "e2", False, 20)],
        start_failures=lambda: {"broken": 2},
        provisioned=lambda: [ProvisionedStats("fn", "1", 4, 1, 128, "x86_64")],
        dispatcher=lambda: {"delivered": 5},
        queue_stats=queue_stats,
    ))
    text = (await collector.exposition()).decode()
    assert 'nimbus_async_queue_depth{function="fn"} 3.0' in text
    samples = {s.name: s for s in collector.samples()}
    assert samples["nimbus_concurrent_executions"].values == [(("fn",), 2.0), (("idle",), 0.0)]
    assert samples["nimbus_account_concurrent_executions"].values == [((), 2.0)]
    assert dict(samples["nimbus_environments"].values) == {("busy",): 1.0, ("idle",): 1.0}
    assert (("fn", "$LATEST", "e1"), 30 * 1024 * 1024.0) in samples["nimbus_environment_memory_bytes"].values
    assert samples["nimbus_sandbox_start_failures"].values == [(("broken",), 2.0)]
    assert samples["nimbus_sandbox_start_failures"].kind == "counter"
    assert samples["nimbus_provisioned_concurrency"].values == [(("fn", "1"), 4.0)]
    assert samples["nimbus_provisioned_concurrency_utilization"].values == [(("fn", "1"), 0.25)]
    assert samples["nimbus_async_queue_depth"].values == [(("fn",), 3.0)]

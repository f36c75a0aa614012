"""`nimbus server` start-up: bad settings are clear errors, and the banner comes once the port is bound."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import NimbusServer


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nimbus", "server", "--data-dir", str(tmp_path), "--isolation", "bogus"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NIMBUS_ACCOUNT_ID": "12"},
    )
    assert out.returncode == 2
    assert "invalid setting isolation (flag --isolation or NIMBUS_ISOLATION)" in out.stderr
    assert "invalid setting account_id" in out.stderr
    assert "Traceback" not in out.stderr


def test_banner_names_endpoint_data_dir_and_backend_after_binding(tmp_path: Path) -> None:
    srv = NimbusServer(tmp_path / "data").start()
    try:
        output = srv.output()
        assert f"listening on http://127.0.0.1:{srv.port}" in output
        assert f"data dir:  {(tmp_path / 'data').resolve()}" in output
        backend = httpx.get(f"{srv.endpoint}/nimbus/v1/health").json()["isolation"]
        assert f"isolation: {backend}" in output
    finally:
        # SIGTERM is a clean shutdown (uvicorn re-raises the signal once it is done, hence -15).
        assert srv.stop() in (0, -15)
    assert "Application shutdown complete" in srv.output()

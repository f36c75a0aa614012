"""Function lifecycle states in the registry (issue 21): Pending/InProgress until the settler runs, a new
RevisionId on each step, conflicts meanwhile, and a restart settles what a previous run left unsettled."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from nimbus.errors import ResourceConflict
from tests.conftest import RUNTIME

from .conftest import ROLE, open_registry


def code() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(e, c):\n    return e\n")
    return buf.getvalue()


def test_states_settle_in_the_background_with_new_revisions(tmp_path: Path) -> None:
    reg = open_registry(tmp_path / "data", lifecycle_delay=0.3)
    try:
        created = reg.create_function({"FunctionName": "fn", "Role": ROLE, "Runtime": RUNTIME,
                                       "Handler": "app.handler"}, code())
        assert created["State"] == "Pending" and "LastUpdateStatus" not in created
        assert reg.get_function_configuration("fn", None)["State"] == "Pending"
        assert reg.snapshot("fn").versions["$LATEST"].pending
        with pytest.raises(ResourceConflict, match="currently in the following state: Pending"):
            reg.update_function_configuration("fn", {"Timeout": 5})
        deadline = time.monotonic() + 10
        while reg.get_function_configuration("fn", None)["State"] == "Pending" and time.monotonic() < deadline:
            time.sleep(0.02)
        active = reg.get_function_configuration("fn", None)
        assert active["State"] == "Active" and active["LastUpdateStatus"] == "Successful"
        assert active["RevisionId"] != created["RevisionId"]
        assert not reg.snapshot("fn").versions["$LATEST"].pending
        updated = reg.update_function_configuration("fn", {"Timeout": 5})
        assert updated["LastUpdateStatus"] == "InProgress"
        with pytest.raises(ResourceConflict, match="An update is in progress for resource: .*function:fn$"):
            reg.publish_version("fn", {})
    finally:
        reg.close()


def test_a_restart_settles_what_was_left_pending(tmp_path: Path) -> None:
    reg = open_registry(tmp_path / "data", lifecycle_delay=3600)  # never settles in this run
    reg.create_function({"FunctionName": "fn", "Role": ROLE, "Runtime": RUNTIME, "Handler": "app.handler"}, code())
    assert reg.get_function_configuration("fn", None)["State"] == "Pending"
    reg.close()
    again = open_registry(tmp_path / "data")
    try:
        assert again.get_function_configuration("fn", None)["State"] == "Active"
    finally:
        again.close()

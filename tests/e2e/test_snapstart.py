"""SnapStart through the public API: the configuration shape, Restore Duration on a published version's new
environments, hooks, and Init Duration (not Restore) on $LATEST's forked environments."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from tests.conftest import ROLE, RUNTIME, make_zip

SOURCE = """
import os, uuid
from snapshot_restore_py import register_after_restore
IDS = {"init_type_at_init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
register_after_restore(lambda: IDS.update(restored=str(uuid.uuid4())))
def handler(event, context):
    return {**IDS, "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""


def report(out: dict[str, Any]) -> str:
    lines = base64.b64decode(out["LogResult"]).decode().splitlines()
    return next(ln for ln in lines if ln.startswith("REPORT"))


def test_snapstart_versions_report_restore_duration(lam: Any) -> None:
    name = f"snap-{uuid.uuid4().hex[:8]}"
    created = lam.create_function(
        FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SOURCE})}, SnapStart={"ApplyOn": "PublishedVersions"},
    )
    assert created["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    version = lam.publish_version(FunctionName=name)
    assert version["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    assert version["State"] == "Pending" and version["StateReasonCode"] == "Creating"
    deadline = time.monotonic() + 60
    while True:  # Active once the version's snapshot (its zygote's INIT) is ready
        conf = lam.get_function_configuration(FunctionName=name, Qualifier=version["Version"])
        if conf["State"] != "Pending" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert conf["State"] == "Active" and "StateReasonCode" not in conf
    out = lam.invoke(FunctionName=name, Qualifier=version["Version"], LogType="Tail")
    first = json.loads(out["Payload"].read())
    line = report(out)
    assert "Restore Duration: " in line and "Billed Restore Duration: " in line and "Init Duration" not in line
    assert first["restored"]  # the after-restore hook ran in this environment
    assert first["init_type"] == first["init_type_at_init"] == "snap-start"
    latest = lam.invoke(FunctionName=name, LogType="Tail")
    assert "Init Duration: " in report(latest) and "Restore Duration" not in report(latest)
    lam.update_function_configuration(FunctionName=name, SnapStart={"ApplyOn": "None"})
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}


def test_code_updates_never_serve_old_code(lam: Any) -> None:
    name = f"upd-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})})
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == 1
    for n in range(2, 5):
        lam.update_function_code(FunctionName=name,
                                 ZipFile=make_zip({"app.py": f"def handler(e, c):\n    return {n}\n"}))
        assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == n


def test_failed_snapshot_fails_the_version(lam: Any) -> None:
    name = f"snapfail-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": "raise RuntimeError('no snapshot for you')\n"})},
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    version = lam.publish_version(FunctionName=name)["Version"]
    deadline = time.monotonic() + 60
    while True:
        conf = lam.get_function_configuration(FunctionName=name, Qualifier=version)
        if conf["State"] != "Pending" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert conf["State"] == "Failed"
    assert conf["StateReasonCode"] == "FunctionError.RuntimeInitError"
    assert "no snapshot for you" in conf["StateReason"]

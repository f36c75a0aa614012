"""Everything the control plane stores survives a restart: a graceful one (SIGTERM) and a crash (SIGKILL
right after an API call answered)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

NAME = "persisted"


def build(lam: Any) -> None:
    lam.create_function(FunctionName=NAME, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})},
                        Environment={"Variables": {"KEY": "value"}}, Tags={"team": "core"}, Publish=True)
    lam.update_function_configuration(FunctionName=NAME, MemorySize=256)
    lam.publish_version(FunctionName=NAME, Description="v2")
    lam.create_alias(FunctionName=NAME, Name="live", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    lam.tag_resource(Resource=f"arn:aws:lambda:us-east-1:000000000000:function:{NAME}", Tags={"more": "x"})
    lam.put_function_concurrency(FunctionName=NAME, ReservedConcurrentExecutions=7)
    lam.add_permission(FunctionName=NAME, StatementId="events", Action="lambda:InvokeFunction",
                       Principal="events.amazonaws.com")


def clean(resp: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in resp.items() if k != "ResponseMetadata"}
    if "Code" in out:  # the host:port of Code.Location is the server's, and a restart may change it
        # (and the link's signature expires, so it differs between calls)
        location = out["Code"]["Location"].split("/nimbus/", 1)[1].split("?", 1)[0]
        out["Code"] = {**out["Code"], "Location": location}
    return out


def state(lam: Any) -> dict[str, Any]:
    return {
        "function": clean(lam.get_function(FunctionName=NAME)),
        "v1": clean(lam.get_function(FunctionName=NAME, Qualifier="1")),
        "versions": clean(lam.list_versions_by_function(FunctionName=NAME)),
        "aliases": clean(lam.list_aliases(FunctionName=NAME)),
        "tags": clean(lam.list_tags(Resource=f"arn:aws:lambda:us-east-1:000000000000:function:{NAME}")),
        "concurrency": clean(lam.get_function_concurrency(FunctionName=NAME)),
        "policy": clean(lam.get_policy(FunctionName=NAME)),
        "list": lam.list_functions(FunctionVersion="ALL")["Functions"],
        "account": clean(lam.get_account_settings()),
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_state_survives_restart(tmp_path: Path, sig: int) -> None:
    data = tmp_path / "data"
    first = NimbusServer(data).start()
    try:
        lam = first.client()
        build(lam)
        before = state(lam)
        # the last write answered just before the kill must be there too
        lam.put_function_concurrency(FunctionName=NAME, ReservedConcurrentExecutions=9)
        before["concurrency"] = {"ReservedConcurrentExecutions": 9}
        before["function"]["Concurrency"] = {"ReservedConcurrentExecutions": 9}
        before["v1"]["Concurrency"] = {"ReservedConcurrentExecutions": 9}
        before["account"]["AccountLimit"]["UnreservedConcurrentExecutions"] -= 2
    finally:
        first.stop(sig)
    second = NimbusServer(data).start()
    try:
        after = state(second.client())
        assert after == before
        code_url = second.client().get_function(FunctionName=NAME)["Code"]["Location"]
        assert httpx.get(code_url).status_code == 200
    finally:
        second.stop()

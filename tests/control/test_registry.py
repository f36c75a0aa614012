"""The registry in-process: operations, publish semantics, the snapshot cache and subscriptions,
persistence across instances."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from nimbus.control.registry import Registry
from nimbus.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from tests.conftest import RUNTIME

from .conftest import ROLE, open_registry


def code(text: str = "def handler(e, c):\n    return e\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", text)
    return buf.getvalue()


def create(reg: Registry, name: str = "fn", **extra: Any) -> dict[str, Any]:
    req = {"FunctionName": name, "Role": ROLE, "Runtime": RUNTIME, "Handler": "app.handler", **extra}
    return reg.create_function(req, code())


def test_create_get_and_snapshot(registry: Registry) -> None:
    conf = create(registry, Environment={"Variables": {"AB": "1"}}, MemorySize=256)
    assert conf["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert conf["Environment"] == {"Variables": {"AB": "1"}}
    snap = registry.snapshot("fn")
    latest = snap.versions["$LATEST"]
    assert latest.memory_size == 256 and latest.environment == {"AB": "1"}
    assert (latest.code_dir / "app.py").is_file()
    assert registry.snapshot("arn:aws:lambda:us-east-1:000000000000:function:fn:7") is snap
    assert registry.snapshot("000000000000:function:fn") is snap
    assert registry.split_qualifier("arn:aws:lambda:us-east-1:000000000000:function:fn:live") == ("fn", "live")


def test_missing_function_is_cached_negatively_and_then_found(registry: Registry) -> None:
    with pytest.raises(ResourceNotFound, match="function:ghost$"):
        registry.snapshot("ghost")
    with pytest.raises(ResourceNotFound):
        registry.snapshot("ghost")
    create(registry, "ghost")
    assert registry.snapshot("ghost").name == "ghost"


def test_subscribers_hear_every_change(registry: Registry) -> None:
    heard: list[str] = []
    registry.subscribe(heard.append)
    create(registry)
    registry.update_function_configuration("fn", {"Timeout": 10})
    registry.delete_function("fn", None)
    assert heard == ["fn"] * 5  # create, Pending -> Active, update, InProgress -> Successful, delete
    with pytest.raises(ResourceNotFound):
        registry.snapshot("fn")


def test_snapshot_is_rebuilt_on_write(registry: Registry) -> None:
    create(registry)
    before = registry.snapshot("fn").versions["$LATEST"]
    registry.update_function_configuration("fn", {"MemorySize": 512})
    after = registry.snapshot("fn").versions["$LATEST"]
    assert after.memory_size == 512 and after.revision_id != before.revision_id


def test_duplicate_create_conflicts(registry: Registry) -> None:
    create(registry)
    with pytest.raises(ResourceConflict, match="Function already exist: fn"):
        create(registry)


def test_publish_only_when_changed(registry: Registry) -> None:
    create(registry)
    v1 = registry.publish_version("fn", {})
    assert v1["Version"] == "1" and v1["FunctionArn"].endswith(":fn:1")
    assert registry.publish_version("fn", {})["Version"] == "1"
    registry.update_function_configuration("fn", {"Description": "new"})
    assert registry.publish_version("fn", {"Description": "second"})["Version"] == "2"
    with pytest.raises(InvalidParameterValue, match="CodeSHA256"):
        registry.publish_version("fn", {"CodeSha256": "nope"})
    with pytest.raises(PreconditionFailed):
        registry.publish_version("fn", {"RevisionId": "stale"})
    versions = registry.list_versions("fn", None, None)["Versions"]
    assert [x["Version"] for x in versions] == ["$LATEST", "1", "2"]
    assert versions[2]["Description"] == "second"


def test_update_code_changes_sha_and_revision_precondition(registry: Registry) -> None:
    conf = create(registry)
    with pytest.raises(PreconditionFailed):
        registry.update_function_code("fn", {"RevisionId": "old"}, code("x = 2"))
    dry = registry.update_function_code("fn", {"DryRun": True}, code("x = 2"))
    assert dry["CodeSha256"] != conf["CodeSha256"]
    assert registry.get_function_configuration("fn", None)["CodeSha256"] == conf["CodeSha256"]
    # As on AWS, Pending -> Active gave the function a new RevisionId after CreateFunction answered.
    active = registry.get_function_configuration("fn", None)["RevisionId"]
    assert active != conf["RevisionId"]
    new = registry.update_function_code("fn", {"RevisionId": active, "Publish": True}, code("x = 2"))
    assert new["Version"] == "1" and new["CodeSha256"] == dry["CodeSha256"]


def test_aliases_and_version_deletion(registry: Registry) -> None:
    create(registry)
    registry.publish_version("fn", {})
    registry.update_function_configuration("fn", {"Timeout": 5})
    registry.publish_version("fn", {})
    alias = registry.create_alias("fn", {"Name": "live", "FunctionVersion": "1",
                                         "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.25}}})
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}
    assert registry.snapshot("fn").aliases["live"].additional_weights == {"2": 0.25}
    with pytest.raises(ResourceConflict, match="Alias already exists"):
        registry.create_alias("fn", {"Name": "live", "FunctionVersion": "1"})
    with pytest.raises(InvalidParameterValue, match="already included"):
        registry.update_alias("fn", "live", {"RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}})
    with pytest.raises(ValidationError):
        registry.update_alias("fn", "live", {"RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}}})
    with pytest.raises(InvalidParameterValue, match="cannot be greater than 1"):
        registry.update_alias("fn", "live", {"RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}}})
    with pytest.raises(ResourceNotFound):
        registry.update_alias("fn", "live", {"RoutingConfig": {"AdditionalVersionWeights": {"9": 0.1}}})
    with pytest.raises(InvalidParameterValue, match=r"\$LATEST"):
        registry.create_alias("fn", {"Name": "dev", "FunctionVersion": "$LATEST",
                                     "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.1}}})
    with pytest.raises(ResourceConflict, match=r"\[live\]"):
        registry.delete_function("fn", "2")  # referenced by the routing config
    with pytest.raises(InvalidParameterValue):
        registry.delete_function("fn", "$LATEST")
    with pytest.raises(ValidationError):
        registry.create_alias("fn", {"Name": "123", "FunctionVersion": "1"})
    registry.update_alias("fn", "live", {"FunctionVersion": "2", "RoutingConfig": {}})
    registry.delete_function("fn", "1")
    assert [x["Version"] for x in registry.list_versions("fn", None, None)["Versions"]] == ["$LATEST", "2"]


def test_concurrency_keeps_the_unreserved_minimum(tmp_path: Path) -> None:
    reg = open_registry(tmp_path / "d", account_concurrency=150, min_unreserved_concurrency=100)
    create(reg, "a")
    create(reg, "b")
    reg.put_concurrency("a", 30)
    with pytest.raises(InvalidParameterValue, match=r"minimum value of \[100\]"):
        reg.put_concurrency("b", 21)
    reg.put_concurrency("b", 20)
    assert reg.reserved_total() == 50
    assert reg.snapshot("b").reserved_concurrency == 20
    reg.delete_concurrency("a")
    assert reg.get_concurrency("a") == {}
    assert reg.account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 130
    reg.close()


def test_permissions(registry: Registry) -> None:
    create(registry)
    with pytest.raises(ResourceNotFound):
        registry.get_policy("fn", None)
    registry.add_permission("fn", None, {"StatementId": "s1", "Action": "lambda:InvokeFunction",
                                         "Principal": "123456789012"})
    with pytest.raises(ResourceConflict):
        registry.add_permission("fn", None, {"StatementId": "s1", "Action": "lambda:InvokeFunction",
                                             "Principal": "*"})
    policy = registry.get_policy("fn", None)
    assert '"AWS":"arn:aws:iam::123456789012:root"' in policy["Policy"]
    with pytest.raises(PreconditionFailed):
        registry.remove_permission("fn", "s1", None, "stale")
    with pytest.raises(ResourceNotFound):
        registry.remove_permission("fn", "nope", None, None)
    registry.remove_permission("fn", "s1", None, policy["RevisionId"])
    with pytest.raises(ResourceNotFound):
        registry.get_policy("fn", None)


def test_tags(registry: Registry) -> None:
    arn = create(registry, Tags={"a": "1"})["FunctionArn"]
    registry.tag_resource(arn, {"b": "2"})
    registry.untag_resource(arn, ["a"])
    assert registry.list_tags(arn) == {"b": "2"}
    with pytest.raises(InvalidParameterValue):
        registry.tag_resource(arn + ":1", {"c": "3"})
    with pytest.raises(ValidationError):
        registry.list_tags("fn")


def test_list_functions_pages(registry: Registry) -> None:
    for n in range(5):
        create(registry, f"f{n}")
    seen: list[str] = []
    marker = None
    while True:
        page = registry.list_functions(marker, 2, False)
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == [f"f{n}" for n in range(5)]


def test_list_functions_pages_names_that_prefix_others(registry: Registry) -> None:
    # "hello" < "hello-cli" as names, but "hello:..." > "hello-cli:..." as marker strings: a page
    # boundary right after "hello" used to skip "hello-cli".
    names = ["hello", "hello-cli", "hello_x", "hellp"]
    for name in names:
        create(registry, name)
    for all_versions in (False, True):
        seen: list[str] = []
        marker = None
        while True:
            page = registry.list_functions(marker, 1, all_versions)
            seen += [f["FunctionName"] for f in page["Functions"]]
            marker = page.get("NextMarker")
            if not marker:
                break
        assert seen == names


def test_list_pages_hold_at_most_50_items(registry: Registry) -> None:
    for n in range(52):
        create(registry, f"f{n:02d}")
    page = registry.list_functions(None, 1000, False)
    assert len(page["Functions"]) == 50 and page["NextMarker"]
    rest = registry.list_functions(page["NextMarker"], 1000, False)
    assert [f["FunctionName"] for f in rest["Functions"]] == ["f50", "f51"] and "NextMarker" not in rest


def test_alias_names_and_version_filters_are_validated(registry: Registry) -> None:
    create(registry)
    # AWS checks the alias name pattern on every alias operation, before looking anything up: a
    # malformed name is a ValidationException, never a 404 or a silent 204.
    for bad in ("bad name", "123", "a" * 129):
        with pytest.raises(ValidationError):
            registry.get_alias("fn", bad)
        with pytest.raises(ValidationError):
            registry.update_alias("fn", bad, {})
        with pytest.raises(ValidationError):
            registry.delete_alias("fn", bad)
    with pytest.raises(ValidationError):
        registry.list_aliases("fn", "nope", None, None)
    assert registry.list_aliases("fn", "$LATEST", None, None) == {"Aliases": []}
    registry.delete_alias("fn", "missing")  # a well-formed name that does not exist: 204, as on AWS


def test_everything_survives_a_new_instance(tmp_path: Path) -> None:
    reg = open_registry(tmp_path / "d")
    create(reg, Tags={"k": "v"})
    reg.publish_version("fn", {})
    reg.create_alias("fn", {"Name": "live", "FunctionVersion": "1"})
    before = reg.get_function("fn", None), reg.list_aliases("fn", None, None, None)
    reg.close()
    again = open_registry(tmp_path / "d")
    assert (again.get_function("fn", None), again.list_aliases("fn", None, None, None)) == before
    assert again.snapshot("fn").aliases["live"].function_version == "1"
    again.close()




def test_a_reader_racing_a_writer_never_caches_stale_state(registry: Registry) -> None:
    """A snapshot loaded before a write but finished after it must not replace the fresh one."""
    import threading

    create(registry)
    registry._cache.clear()
    real_load = registry._load
    loaded_old, go = threading.Event(), threading.Event()
    local = threading.local()

    def slow_load(name: str) -> Any:
        result = real_load(name)
        if getattr(local, "reader", False):
            loaded_old.set()
            go.wait(10)
        return result

    def read() -> None:
        local.reader = True
        registry.snapshot("fn")

    registry._load = slow_load  # type: ignore[method-assign]
    reader = threading.Thread(target=read)
    reader.start()
    assert loaded_old.wait(10)
    registry.update_function_configuration("fn", {"MemorySize": 512})
    go.set()
    reader.join()
    assert registry.snapshot("fn").versions["$LATEST"].memory_size == 512

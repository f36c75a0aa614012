"""Packaging (patterns, deterministic zips) and the plan against a server's state."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from nimbus.project import plan as planning
from nimbus.project.model import FunctionSpec, ServiceSpec
from nimbus.project.package import build, select


def test_patterns_apply_in_order_after_default_excludes() -> None:
    files = ["handler.py", "lib/a.py", "lib/__pycache__/a.cpython-311.pyc", ".git/HEAD", "tests/test_a.py",
             "README.md", "node_modules/x/index.js", "data/keep.json", "data/drop.csv"]
    kept = select(files, ["!tests/**", "!README.md", "!data/**", "data/*.json"])
    assert kept == ["handler.py", "lib/a.py", "node_modules/x/index.js", "data/keep.json"]
    assert select(files, ["!./**", "handler.py"]) == ["handler.py"]


def _spec(root: Path, **kw: object) -> FunctionSpec:
    return FunctionSpec(key="f", name="svc-dev-f", handler="h.f", runtime="python3.12", source_dir=root,
                        **kw)  # type: ignore[arg-type]


def test_zip_is_deterministic_and_follows_content(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text("def f(e, c):\n    return 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("")
    first = build(_spec(tmp_path, patterns=["!tests/**"]))
    (tmp_path / "h.py").touch()  # a new mtime alone is not a change
    assert build(_spec(tmp_path, patterns=["!tests/**"])).sha256 == first.sha256
    assert zipfile.ZipFile(io.BytesIO(first.data)).namelist() == ["h.py"]
    (tmp_path / "h.py").write_text("def f(e, c):\n    return 2\n")
    assert build(_spec(tmp_path, patterns=["!tests/**"])).sha256 != first.sha256


def _remote(spec: FunctionSpec, sha: str, service: ServiceSpec) -> planning.RemoteFunction:
    config = {"FunctionArn": f"arn:aws:lambda:us-east-1:000000000000:function:{spec.name}", "CodeSha256": sha,
              **planning.desired_config(spec), "Layers": [], "Environment": {"Variables": spec.environment}}
    return planning.RemoteFunction(
        spec.name, config, planning.desired_tags(service, spec), None,
        {"Name": "live", "FunctionVersion": "1"}, [{"Version": "1", "CodeSha256": sha}])


def test_plan_create_unchanged_update_delete(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text("x = 1\n")
    spec = _spec(tmp_path)
    service = ServiceSpec(tmp_path / "serverless.yml", "svc", "dev", "us-east-1", [spec])
    package = build(spec)
    empty = planning.RemoteState({}, {}, {})
    created = planning.make(service, {spec.name: package}, empty)
    assert [(c.action, c.name, c.publish) for c in created.functions] == [("create", "svc-dev-f", True)]

    same = planning.RemoteState({spec.name: _remote(spec, package.sha256, service)}, {}, {})
    assert planning.make(service, {spec.name: package}, same).empty

    spec.memory = 2048
    changed = planning.make(service, {spec.name: package}, same)
    (change,) = changed.functions
    assert (change.action, change.code, change.config_keys, change.publish) == ("update", False, ["MemorySize"], True)

    other = FunctionSpec(key="old", name="svc-dev-old", handler="h.f", runtime="python3.12")
    stale = planning.RemoteState({**same.functions, "svc-dev-old": _remote(other, "x", service)}, {}, {})
    spec.memory = 1024
    assert [(c.action, c.name) for c in planning.make(service, {spec.name: package}, stale).functions] == [
        ("delete", "svc-dev-old")]


def test_plan_moves_alias_back_to_files_after_rollback(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text("x = 1\n")
    spec = _spec(tmp_path)
    service = ServiceSpec(tmp_path / "serverless.yml", "svc", "dev", "us-east-1", [spec])
    package = build(spec)
    remote = _remote(spec, package.sha256, service)
    remote.versions = [{"Version": "1", "CodeSha256": "old"}, {"Version": "2", "CodeSha256": package.sha256}]
    (change,) = planning.make(service, {spec.name: package}, planning.RemoteState({spec.name: remote}, {},
                                                                                  {})).functions
    assert (change.publish, change.alias_version) == (False, "2")


def test_schedules_planned_by_name(tmp_path: Path) -> None:
    from nimbus.project.model import Schedule

    spec = _spec(tmp_path, schedules=[Schedule("rate(1 minute)")])
    service = ServiceSpec(tmp_path / "serverless.yml", "svc", "dev", "us-east-1", [spec])
    events = planning._events(service, planning.RemoteState({}, {"svc-dev-gone-schedule-1": {}}, {}))
    assert [(e.action, e.name) for e in events] == [("create", "svc-dev-f-schedule-1"),
                                                   ("delete", "svc-dev-gone-schedule-1")]

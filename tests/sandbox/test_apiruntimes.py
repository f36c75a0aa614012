"""Which Runtime API runtimes the host can run, and their command lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus import runtimes
from nimbus.sandbox import apiruntimes
from nimbus.sandbox.apiruntimes import (
    NODE_RIC_INSIDE,
    api_runtimes,
    find_node,
    is_api_runtime,
    runtime_command,
    unavailable_reason,
)


def test_runtime_families() -> None:
    assert all(is_api_runtime(r) for r in ("provided", "provided.al2", "provided.al2023", "nodejs22.x"))
    assert not is_api_runtime("python3.12")


def test_custom_runtimes_look_for_a_bootstrap() -> None:
    command = runtime_command("provided.al2023", isolated=True)
    assert command.argv == ()
    # /bin/sh is bash and /lambda-entrypoint.sh exists, as in AWS's provided images (issue 21)
    assert ("/usr/bin/bash", "/usr/bin/sh") in command.binds
    assert any(inside == "/lambda-entrypoint.sh" and Path(host).is_file() for host, inside in command.binds)
    assert runtime_command("provided.al2023", isolated=False).binds == ()


def test_custom_runtimes_need_only_the_launcher_python(tmp_path: Path) -> None:
    python = tmp_path / "python3.11"
    assert set(api_runtimes({"python3.11": python})) >= {"provided", "provided.al2", "provided.al2023"}
    assert api_runtimes({}) == {}


def test_missing_node_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NIMBUS_NODE", "/nonexistent/node")
    monkeypatch.setenv("NIMBUS_NODE_RUNTIMES_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_node("nodejs22.x") is None
    assert "Node.js 22 is not installed" in unavailable_reason("nodejs22.x")
    assert "NIMBUS_RUNTIME_NODEJS22_X" in unavailable_reason("nodejs22.x")
    assert unavailable_reason("provided.al2023") == ""
    assert "nodejs22.x" not in api_runtimes({"python3.11": Path("/usr/bin/python3.11")})
    with pytest.raises(FileNotFoundError):
        runtime_command("nodejs22.x", isolated=True)


def test_missing_ric_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    node = tmp_path / "node"
    node.write_text("#!/bin/sh\n")
    node.chmod(0o755)
    monkeypatch.setenv("NIMBUS_RUNTIME_NODEJS20_X", str(node))
    monkeypatch.setenv("NIMBUS_NODE_RIC_DIR", str(tmp_path / "nothing"))
    apiruntimes.node_ric_dir.cache_clear()
    try:
        assert "aws-lambda-ric" in unavailable_reason("nodejs20.x")
    finally:
        monkeypatch.undo()
        apiruntimes.node_ric_dir.cache_clear()


def test_node_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ric = tmp_path / "ric"
    ric.mkdir()
    (ric / "index.mjs").write_text("")
    node = tmp_path / "prefix" / "bin" / "node"
    node.parent.mkdir(parents=True)
    node.write_text("#!/bin/sh\n")
    node.chmod(0o755)
    monkeypatch.setenv("NIMBUS_RUNTIME_NODEJS24_X", str(node))
    monkeypatch.setenv("NIMBUS_NODE_RIC_DIR", str(ric))
    apiruntimes.node_ric_dir.cache_clear()
    try:
        inside = runtime_command("nodejs24.x", isolated=True)
        # node's prefix is mounted at a fixed place (its host path may be under /tmp, hidden by the sandbox's)
        assert inside.argv[0] == "/var/lang/node/bin/node" and inside.argv[-1] == f"{NODE_RIC_INSIDE}/index.mjs"
        # The RIC is mounted, and so is node's prefix (not under /usr).
        assert set(inside.binds) == {(str(ric), NODE_RIC_INSIDE), (str(tmp_path / "prefix"), "/var/lang/node")}
        assert inside.environ["NODE_PATH"].endswith("/var/runtime:/var/task")
        outside = runtime_command("nodejs24.x", isolated=False)
        assert outside.argv[-1] == f"{ric}/index.mjs" and outside.binds == ()
    finally:
        monkeypatch.undo()
        apiruntimes.node_ric_dir.cache_clear()


def test_each_runtime_takes_the_node_of_its_major(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for major in (22, 24):
        node = tmp_path / f"node{major}" / "bin" / "node"
        node.parent.mkdir(parents=True)
        node.write_text(f"#!/bin/sh\necho {major}.1.0\n")
        node.chmod(0o755)
    monkeypatch.setenv("NIMBUS_NODE_RUNTIMES_DIR", str(tmp_path))
    monkeypatch.setenv("NIMBUS_NODE", "/nonexistent/node")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_node("nodejs22.x") == tmp_path / "node22" / "bin" / "node"
    assert find_node("nodejs24.x") == tmp_path / "node24" / "bin" / "node"
    assert find_node("nodejs20.x") is None
    # the host's node serves only the runtime of its own major
    host = tmp_path / "host" / "node"
    host.parent.mkdir()
    host.write_text("#!/bin/sh\necho 20.5.1\n")
    host.chmod(0o755)
    monkeypatch.setenv("NIMBUS_NODE", str(host))
    assert runtimes.node_major(host) == 20
    assert find_node("nodejs20.x") == host


def test_ric_versions_per_major(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for version in ("3.3.0", "4.0.2", "4.1.0"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "index.mjs").write_text("")
    monkeypatch.setenv("NIMBUS_NODE_RIC_DIR", str(tmp_path))
    apiruntimes.node_ric_dir.cache_clear()
    try:
        assert apiruntimes.node_ric_dir("nodejs20.x") == tmp_path / "3.3.0"
        assert apiruntimes.node_ric_dir("nodejs22.x") == tmp_path / "4.1.0"
        assert apiruntimes.node_ric_dir("nodejs24.x") == tmp_path / "4.1.0"
    finally:
        monkeypatch.undo()
        apiruntimes.node_ric_dir.cache_clear()


def test_esm_imports_from_layers_are_mounted_where_node_looks(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    node = tmp_path / "prefix" / "bin" / "node"
    node.parent.mkdir(parents=True)
    node.write_text("#!/bin/sh\n")
    node.chmod(0o755)
    ric = tmp_path / "ric"
    ric.mkdir()
    (ric / "index.mjs").write_text("")
    opt = tmp_path / "opt"
    (opt / "nodejs" / "node_modules").mkdir(parents=True)
    (opt / "nodejs" / "node22" / "node_modules").mkdir(parents=True)
    monkeypatch.setenv("NIMBUS_RUNTIME_NODEJS22_X", str(node))
    monkeypatch.setenv("NIMBUS_NODE_RIC_DIR", str(ric))
    apiruntimes.node_ric_dir.cache_clear()
    try:
        binds = set(runtime_command("nodejs22.x", isolated=True, opt_dir=opt).binds)
        assert (str(opt / "nodejs" / "node22" / "node_modules"), "/var/node_modules") in binds
        assert (str(opt / "nodejs" / "node_modules"), "/node_modules") in binds
    finally:
        monkeypatch.undo()
        apiruntimes.node_ric_dir.cache_clear()


def test_layers_with_external_extensions_are_detected(tmp_path: Path) -> None:
    assert not apiruntimes.has_extensions(None)
    assert not apiruntimes.has_extensions(tmp_path)  # no extensions/ directory
    ext = tmp_path / "extensions"
    ext.mkdir()
    (ext / "README").write_text("not executable")
    (ext / "subdir").mkdir(mode=0o755)
    assert not apiruntimes.has_extensions(tmp_path)
    (ext / "logger").write_text("#!/bin/sh\n")
    (ext / "logger").chmod(0o755)
    assert apiruntimes.has_extensions(tmp_path)


def test_python_as_a_runtime_api_client() -> None:
    command = apiruntimes.python_client_command(Path("/usr/bin/python3.12"), "/var/runtime", "bootstrap.x.pyc", "/opt")
    assert command.argv == ("/usr/bin/python3.12", "-I", "-S", "/var/runtime/bootstrap.x.pyc")
    assert command.environ == {"_NIMBUS_API_CLIENT_OPT_DIR": "/opt"}

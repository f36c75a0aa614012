"""`nimbus init` projects pass their own tests, and the HTTP API one deploys and answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from nimbus.cli.init import TEMPLATES
from nimbus.project.errors import ProjectError
from nimbus.project.package import vendor
from tests.conftest import NimbusServer

RUNTIME = f"python3.{sys.version_info.minor}"


def init(tmp_path: Path, template: str) -> Path:
    target = tmp_path / template
    done = subprocess.run([sys.executable, "-m", "nimbus", "init", str(target), "--template", template,
                           "--name", f"i{uuid.uuid4().hex[:6]}", "--runtime", RUNTIME],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (target / "serverless.yml").is_file() and (target / "README.md").is_file()
    return target


def own_tests(root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("template", ["python-http-api", "python-scheduled", "python-queue-worker"])
def test_python_templates_pass_their_tests(tmp_path: Path, template: str) -> None:
    done = own_tests(init(tmp_path, template))
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout


def test_fastapi_template_passes_its_tests(tmp_path: Path) -> None:
    root = init(tmp_path, "python-fastapi")
    try:
        deps = vendor(root / "requirements.txt", RUNTIME)  # what `nimbus deploy` puts in the zip
    except ProjectError as exc:
        pytest.skip(f"pip cannot install fastapi/mangum here (offline?): {exc.message[-200:]}")
    done = own_tests(root, {"PYTHONPATH": str(deps)})
    assert done.returncode == 0, done.stdout + done.stderr


def test_node_template_passes_its_test(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    root = init(tmp_path, "node-http")
    done = subprocess.run([node, "--test", "test/"], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_template_is_a_valid_project(tmp_path: Path) -> None:
    from nimbus.project import serverless

    for template in TEMPLATES:
        spec = serverless.parse(init(tmp_path, template) / "serverless.yml", {}, {})
        assert spec.functions and not [w for w in spec.warnings if "unknown" in w], spec.warnings


def test_http_api_template_deploys_and_answers(server: NimbusServer, tmp_path: Path) -> None:
    root = init(tmp_path, "python-http-api")
    env = {**os.environ, **server.cli_env()}
    done = subprocess.run([sys.executable, "-m", "nimbus", "deploy", str(root)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    endpoint = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("httpApi (path"))
    assert httpx.get(f"{endpoint}/hello/Ada", timeout=60).json() == {"message": "Hello, Ada!"}
    created = httpx.post(f"{endpoint}/items", json={"id": 1}, timeout=60)
    assert created.status_code == 201 and created.json() == {"created": {"id": 1}}
    assert subprocess.run([sys.executable, "-m", "nimbus", "remove", str(root)], env=env, capture_output=True,
                          timeout=120).returncode == 0

"""What a runtime process is started with: its complete environment (the user's variables, then Lambda's
reserved ones), its log stream's name and the INIT_START line naming its runtime version."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.sandbox.backends import Backend
from nimbus.sandbox.runtimes import python_prefix


def make_log_stream(version: str) -> str:
    """`YYYY/MM/DD/[<version>]<32 hex>`, as Lambda names an environment's log stream."""
    return f"{datetime.now(UTC):%Y/%m/%d}/[{version}]{uuid.uuid4().hex}"


def runtime_version_line(runtime: str, region: str) -> str:
    """The INIT_START line AWS logs at each cold start."""
    digest = hashlib.sha256(runtime.encode()).hexdigest()
    # AWS's spelling: python:3.12, nodejs:20, provided:al2023
    name = runtime.replace("python", "python:").replace("nodejs", "nodejs:").removesuffix(".x")
    name = name.replace("provided.", "provided:")
    return (
        f"INIT_START Runtime Version: {name}.v1\t"
        f"Runtime Version ARN: arn:aws:lambda:{region}::runtime:{digest}"
    )


def build_environ(
    spec: VersionSpec, settings: Settings, backend: Backend, log_stream: str, interpreter: Path
) -> dict[str, str]:
    """The runtime's complete environment: the user's variables, then Lambda's reserved ones."""
    task_root = backend.task_root(spec.code_dir)
    runtime_dir = backend.runtime_dir
    prefix = python_prefix(interpreter)
    opt = backend.opt_root(spec.opt_dir)  # layers: /opt, or their real place where it cannot be mounted
    env = dict(spec.environment)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": task_root,
            "LAMBDA_RUNTIME_DIR": runtime_dir,
            "_HANDLER": spec.handler,
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": f"{prefix}/bin:/usr/local/bin:/usr/bin/:/bin:{opt}/bin",
            "LD_LIBRARY_PATH": (
                f"{prefix}/lib:/lib64:/usr/lib64:{runtime_dir}:{runtime_dir}/lib:{task_root}:{task_root}/lib:{opt}/lib"
            ),
            "PYTHONPATH": runtime_dir,
        }
    )
    # AWS sets these for the X-Ray SDK unless the function does (developer guide, configuration-envvars)
    for key, value in (("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR"), ("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000"),
                       ("_AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129"), ("_AWS_XRAY_DAEMON_PORT", "2000")):
        env.setdefault(key, value)
    if spec.runtime.startswith("nodejs"):
        major = spec.runtime.removeprefix("nodejs").split(".")[0]
        env.setdefault("NODE_PATH", f"{opt}/nodejs/node{major}/node_modules:{opt}/nodejs/node_modules")
    if opt != "/opt":
        env["_NIMBUS_OPT_DIR"] = opt  # the Python runtime puts {opt}/python on sys.path (bootstrap.py)
    log_format = str(spec.logging_config.get("LogFormat") or "Text")
    if log_format.upper() == "JSON":
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        level = spec.logging_config.get("ApplicationLogLevel")
        if level:
            env["AWS_LAMBDA_LOG_LEVEL"] = str(level)
    return env

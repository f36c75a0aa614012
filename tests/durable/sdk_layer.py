"""The official durable-execution SDK as a Lambda layer (`python/` inside the zip), built from the packages
installed in this virtualenv (it is a test dependency: `make install` installs it from the package index).
botocore's service models are cut down to the ones the SDK's client loads (lambda, plus botocore's own
endpoint/retry/config files): the code is the installed code, unchanged; only unused models are left out."""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

PACKAGES = ("aws_durable_execution_sdk_python", "boto3", "botocore", "s3transfer", "jmespath", "dateutil",
            "urllib3", "six")
_KEEP_DATA = ("lambda",)


def _root(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def build_layer(cache_dir: Path) -> bytes:
    """The layer zip, cached in `cache_dir`."""
    cached = cache_dir / "durable-sdk-layer.zip"
    if cached.exists():
        return cached.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name in PACKAGES:
            root = _root(name)
            files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
            for path in files:
                rel = path.relative_to(root.parent)
                parts = rel.parts
                if "__pycache__" in parts:
                    continue
                if parts[:2] == ("botocore", "data") and len(parts) > 3 and parts[2] not in _KEEP_DATA:
                    continue
                zf.write(path, f"python/{rel.as_posix()}")
    data = buf.getvalue()
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data

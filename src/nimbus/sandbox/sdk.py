"""The AWS SDK that AWS's Python runtimes include (issue 21): boto3 and its dependencies, so a function that
imports boto3 without bundling it works. They are the distributions installed with nimbus itself (from
PyPI, pinned in requirements.lock), linked into the runtime directory environments see read-only at
LAMBDA_RUNTIME_DIR (/var/runtime), which the bootstrap puts on sys.path after the function's code and its
layers, as AWS orders them."""

from __future__ import annotations

import importlib.metadata as metadata
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

# boto3 and what it needs at run time
DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")


def link_python_sdk(root: Path) -> None:
    """Hard-link (copy across file systems) the SDK's package files into `root`; a missing distribution is
    logged and left out."""
    for name in DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            log.warning("%s is not installed with nimbus: Python functions will not find it", name)
            continue
        for file in dist.files or ():
            text = str(file)
            if text.startswith(("..", "/")) or ".dist-info" in text or "__pycache__" in text:
                continue
            source = Path(str(dist.locate_file(file)))
            target = root / text
            if target.exists() or not source.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(target.parent, 0o755)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
                os.chmod(target, 0o644)

"""An in-process registry over a fresh SQLite database, for control-plane unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nimbus.config import Settings
from nimbus.control.codestore import CodeStore
from nimbus.control.db import make_engine, migrate
from nimbus.control.registry import Registry

ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def open_registry(data_dir: Path, **overrides: Any) -> Registry:
    settings = Settings(data_dir=data_dir, **overrides)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    return Registry(settings, engine, CodeStore(data_dir / "code", settings))


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = open_registry(tmp_path / "data")
    yield reg
    reg.close()

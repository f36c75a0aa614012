"""Environment credentials (control/credentials.py): keys die with their environment, policies decide
cross-function Invoke."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nimbus.config import Settings
from nimbus.control import credentials as creds_mod
from nimbus.control.credentials import EnvironmentLiveness, FunctionCredentials, _allows, env_vars
from nimbus.control.db import make_engine, migrate
from nimbus.control.keys import KeyStore

ARN = "arn:aws:lambda:us-east-1:000000000000:function:target"
ROLE = "arn:aws:iam::000000000000:role/caller"


def test_keys_stop_working_when_their_environment_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry: Any = SimpleNamespace(get_function_configuration=lambda n, q: {"Role": ROLE})
    live = {"env-1", "env-2"}
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    keys = KeyStore(Settings(data_dir=tmp_path), engine, session_alive=EnvironmentLiveness(lambda: set(live)))
    credentials = FunctionCredentials(keys, registry)
    one = credentials.issue("fn", "env-1")
    two = credentials.issue("fn", "env-2")
    assert one.role == ROLE
    monkeypatch.setattr(creds_mod, "STARTING_GRACE", 0.0)
    monkeypatch.setattr(creds_mod, "LIVE_CACHE", 0.0)
    assert keys.lookup(one.access_key_id) is one
    live.discard("env-1")
    assert keys.lookup(one.access_key_id) is None
    assert keys.lookup(two.access_key_id) is two
    variables = env_vars(two, "http://127.0.0.1:9001")
    assert variables["AWS_SESSION_TOKEN"] == two.session_token
    assert variables["AWS_ENDPOINT_URL_LAMBDA"] == "http://127.0.0.1:9001"
    engine.dispose()


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ({"Principal": {"AWS": ROLE}}, True),
        ({"Principal": "*"}, True),
        ({"Principal": {"AWS": "arn:aws:iam::000000000000:role/someone-else"}}, False),
        ({"Principal": {"Service": "events.amazonaws.com"}}, False),
        ({"Principal": "*", "Action": "lambda:GetFunction"}, False),
        ({"Principal": "*", "Resource": ARN + ":live"}, True),
        ({"Principal": "*", "Resource": ARN + "x"}, False),
        ({"Principal": "*", "Effect": "Deny"}, False),
        ({"Principal": "*", "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}}, False),
    ],
)
def test_policy_statements(statement: dict[str, Any], allowed: bool) -> None:
    st = {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": ARN, **statement}
    assert _allows(st, ARN, ROLE, "arn:aws:lambda:us-east-1:000000000000:function:caller") is allowed

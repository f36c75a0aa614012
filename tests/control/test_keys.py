"""The key store (control/keys.py): the admin key file, sealed secrets at rest, create/list/delete,
verify_secret, session keys."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from nimbus.awscreds import read_credentials_file
from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.control.keys import KeyStore, Sealer
from nimbus.control.models import AccessKeyRow
from nimbus.errors import InvalidParameterValue, ResourceNotFound


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    yield engine
    engine.dispose()


def store(tmp_path: Path, engine: Engine) -> KeyStore:
    return KeyStore(Settings(data_dir=tmp_path), engine)


def test_admin_key_is_made_once_in_a_private_file(tmp_path: Path, engine: Engine) -> None:
    first = store(tmp_path, engine)
    assert first.created_admin
    path = tmp_path / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    assert read_credentials_file(path) == (first.admin.access_key_id, first.admin.secret)
    again = store(tmp_path, engine)
    assert not again.created_admin and again.admin.access_key_id == first.admin.access_key_id


def test_loose_permissions_are_tightened(tmp_path: Path, engine: Engine) -> None:
    store(tmp_path, engine)
    (tmp_path / "credentials").chmod(0o644)
    store(tmp_path, engine)
    assert stat.S_IMODE((tmp_path / "credentials").stat().st_mode) == 0o600


def test_created_keys_are_sealed_at_rest_and_survive_a_restart(tmp_path: Path, engine: Engine) -> None:
    keys = store(tmp_path, engine)
    made = keys.create("ci")
    secret = made["SecretAccessKey"]
    with Session(engine) as s:
        row = s.scalars(select(AccessKeyRow)).one()
    assert secret not in row.sealed_secret
    restarted = store(tmp_path, engine)
    found = restarted.lookup(made["AccessKeyId"])
    assert found is not None and found.secret == secret
    listed = {k["AccessKeyId"]: k for k in restarted.list()}
    assert set(listed) == {made["AccessKeyId"], keys.admin.access_key_id}
    assert all("SecretAccessKey" not in k for k in listed.values())


def test_another_master_key_cannot_unseal(tmp_path: Path) -> None:
    sealed = Sealer(b"a" * 32).seal("secret")
    assert Sealer(b"a" * 32).unseal(sealed) == "secret"
    with pytest.raises(ValueError):
        Sealer(b"b" * 32).unseal(sealed)


def test_delete(tmp_path: Path, engine: Engine) -> None:
    keys = store(tmp_path, engine)
    made = keys.create()
    keys.delete(made["AccessKeyId"])
    assert keys.lookup(made["AccessKeyId"]) is None
    with pytest.raises(ResourceNotFound):
        keys.delete(made["AccessKeyId"])
    with pytest.raises(InvalidParameterValue):
        keys.delete(keys.admin.access_key_id)


def test_verify_secret(tmp_path: Path, engine: Engine) -> None:
    keys = store(tmp_path, engine)
    made = keys.create()
    assert keys.verify_secret(keys.admin.access_key_id, keys.admin.secret)
    assert keys.verify_secret(made["AccessKeyId"], made["SecretAccessKey"])
    assert not keys.verify_secret(made["AccessKeyId"], keys.admin.secret)
    assert not keys.verify_secret("NKIAUNKNOWNUNKNOWN00", made["SecretAccessKey"])
    assert not keys.verify_secret("", keys.decoy.secret)
    session = keys.issue_session("fn")
    assert not keys.verify_secret(session.access_key_id, session.secret)  # not for logins


def test_session_keys_expire_and_are_revoked(tmp_path: Path, engine: Engine) -> None:
    keys = KeyStore(Settings(data_dir=tmp_path, function_credentials_ttl=0), engine)
    expired = keys.issue_session("fn")
    assert keys.lookup(expired.access_key_id) is None
    keys = store(tmp_path, engine)
    live = keys.issue_session("fn")
    assert keys.lookup(live.access_key_id) is live
    keys.revoke_function("fn")
    assert keys.lookup(live.access_key_id) is None


def test_code_tokens(tmp_path: Path, engine: Engine) -> None:
    keys = store(tmp_path, engine)
    token = keys.code_token("abc", 4_000_000_000)
    assert keys.check_code_token("abc", "4000000000", token)
    assert not keys.check_code_token("abd", "4000000000", token)
    assert not keys.check_code_token("abc", "1000", keys.code_token("abc", 1000))

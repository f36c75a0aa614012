"""Access keys: who may call the API. Owns the admin key (made on first start, kept in `<data dir>/credentials`,
mode 0600, in the AWS shared-credentials format), the long-term keys made with `nimbus keys create` (in the
database, secrets sealed with the master key in `<data dir>/master.key`), and the short-lived session keys
handed to function environments (memory only: they die with the environment or the server).

SigV4 needs the secret itself to verify a signature, so secrets cannot be hashed; sealing them keeps a copy
of the database (a backup, a shared PostgreSQL) from being enough to sign requests. The seal is an HMAC-SHA256
keystream with an encrypt-then-MAC tag, from the standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from nimbus.awscreds import CREDENTIALS_FILE, PROFILE, read_credentials_file
from nimbus.config import Settings
from nimbus.control.documents import lambda_timestamp
from nimbus.control.models import AccessKeyRow
from nimbus.errors import InvalidParameterValue, ResourceNotFound
from nimbus.sigv4 import signing_key

log = logging.getLogger("nimbus.keys")

MASTER_KEY_FILE = "master.key"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DERIVED_MAX = 16  # derived signing keys kept per access key (days x regions x services)
_RELOAD_INTERVAL = 5.0  # seconds between database reloads triggered by unknown key ids


def new_access_key_id(prefix: str = "NKIA") -> str:
    """A key id shaped like AWS's (4-letter prefix + 16 base32 characters)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def new_secret() -> str:
    return secrets.token_urlsafe(30)  # 40 characters, as AWS's


@dataclass(eq=False)
class AccessKey:
    """One key the server accepts. `function_name` set means a function environment's session key, which may
    act only on that function (and invoke the functions whose policies allow it)."""

    access_key_id: str
    secret: str
    kind: str  # "admin" | "user" | "session"
    created_ms: int
    description: str = ""
    session_token: str | None = None
    expires_at: float | None = None
    function_name: str | None = None
    role: str | None = None
    environment_id: str | None = None  # the execution environment a session key was made for
    _derived: dict[tuple[str, str, str], bytes] = field(default_factory=dict, repr=False)

    def derived_key(self, date: str, region: str, service: str) -> bytes:
        """The signing key for one day/region/service, cached (deriving it costs four HMACs)."""
        cache_key = (date, region, service)
        key = self._derived.get(cache_key)
        if key is None:
            if len(self._derived) >= _DERIVED_MAX:
                self._derived.clear()
            key = self._derived[cache_key] = signing_key(self.secret, date, region, service)
        return key

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "AccessKeyId": self.access_key_id,
            "Kind": self.kind,
            "Description": self.description,
            "CreateDate": lambda_timestamp(self.created_ms / 1000),
        }
        if self.function_name:
            out["FunctionName"] = self.function_name
        return out


class Sealer:
    """Seals secrets for storage with a 32-byte master key: HMAC-SHA256 in counter mode, then an HMAC tag."""

    def __init__(self, master: bytes) -> None:
        self._enc = hmac.digest(master, b"nimbus seal encryption", "sha256")
        self._mac = hmac.digest(master, b"nimbus seal authentication", "sha256")
        self.token_key = hmac.digest(master, b"nimbus code download tokens", "sha256")

    def _stream(self, nonce: bytes, size: int) -> bytes:
        blocks = (hmac.digest(self._enc, nonce + i.to_bytes(4, "big"), "sha256") for i in range((size + 31) // 32))
        return b"".join(blocks)[:size]

    def seal(self, plaintext: str) -> str:
        data = plaintext.encode()
        nonce = secrets.token_bytes(16)
        sealed = bytes(a ^ b for a, b in zip(data, self._stream(nonce, len(data)), strict=True))
        tag = hmac.digest(self._mac, nonce + sealed, "sha256")[:16]
        return base64.b64encode(nonce + sealed + tag).decode()

    def unseal(self, token: str) -> str:
        raw = base64.b64decode(token)
        nonce, sealed, tag = raw[:16], raw[16:-16], raw[-16:]
        if not hmac.compare_digest(tag, hmac.digest(self._mac, nonce + sealed, "sha256")[:16]):
            raise ValueError("sealed secret does not match the master key")
        return bytes(a ^ b for a, b in zip(sealed, self._stream(nonce, len(sealed)), strict=True)).decode()


def _write_private(path: Path, content: bytes) -> None:
    """Create `path` with mode 0600 (never world-readable, not even for an instant)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
        path.chmod(0o600)


class KeyStore:
    """Every access key the server accepts, in memory for the hot path. Thread-safe."""

    def __init__(self, settings: Settings, engine: Engine,
                 session_alive: Callable[[AccessKey], bool] | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.data_dir = settings.data_dir
        self.sealer = Sealer(self._master_key())
        self.admin, self.created_admin = self._admin_key()
        self._lock = threading.Lock()
        self._keys: dict[str, AccessKey] = {}
        self._sessions: dict[str, AccessKey] = {}
        self._last_reload = 0.0
        # Whether a session key's environment still runs (control/credentials.py `EnvironmentLiveness`); keys
        # of environments that ended are refused from then on.
        self.session_alive = session_alive
        # Unknown key ids are checked against this, so a bad key costs what a bad signature costs.
        self.decoy = AccessKey("", new_secret(), "decoy", 0)
        self.reload()

    # ---------------------------------------------------------------- files in the data dir

    def _master_key(self) -> bytes:
        path = self.data_dir / MASTER_KEY_FILE
        if not path.exists():
            with contextlib.suppress(FileExistsError):  # another process won the race
                _write_private(path, secrets.token_bytes(32).hex().encode())
        _check_private(path)
        return bytes.fromhex(path.read_text().strip())

    def _admin_key(self) -> tuple[AccessKey, bool]:
        path = self.credentials_path
        created = False
        if not path.exists():
            akid, secret = new_access_key_id(), new_secret()
            text = (
                f"# nimbus admin credentials, created {lambda_timestamp()}. Anyone with this file controls the\n"
                f"# server: keep it private (mode 0600). Use it with AWS_SHARED_CREDENTIALS_FILE={path}\n"
                f"# AWS_PROFILE={PROFILE}, or copy the profile into ~/.aws/credentials.\n"
                f"[{PROFILE}]\naws_access_key_id = {akid}\naws_secret_access_key = {secret}\n"
            )
            try:
                _write_private(path, text.encode())
                created = True
            except FileExistsError:
                pass
        _check_private(path)
        found = read_credentials_file(path)
        if found is None:
            raise RuntimeError(f"{path} has no [{PROFILE}] profile with aws_access_key_id/aws_secret_access_key")
        return AccessKey(found[0], found[1], "admin", int(path.stat().st_mtime * 1000), "admin (data dir)"), created

    @property
    def credentials_path(self) -> Path:
        return self.data_dir / CREDENTIALS_FILE

    # ---------------------------------------------------------------- lookups (hot path)

    def lookup(self, access_key_id: str) -> AccessKey | None:
        """The key with this id, if the server knows it and it has not expired."""
        if access_key_id == self.admin.access_key_id:
            return self.admin
        key = self._keys.get(access_key_id) or self._sessions.get(access_key_id)
        if key is None and not access_key_id.startswith("NSIA"):
            key = self._reload_for(access_key_id)
        if key is not None and key.kind == "session" and (
            (key.expires_at is not None and key.expires_at < time.time())
            or (self.session_alive is not None and not self.session_alive(key))
        ):
            self.revoke(access_key_id)
            return None
        return key

    def _reload_for(self, access_key_id: str) -> AccessKey | None:
        # Maybe a key made by another front end sharing the database: reload in the background (at most every
        # 5 s), so an unknown id costs no more than a known one; a retry finds the key.
        now = time.monotonic()
        if now - self._last_reload >= _RELOAD_INTERVAL:
            self._last_reload = now
            threading.Thread(target=self.reload, name="nimbus-keys-reload", daemon=True).start()
        return None

    def reload(self) -> None:
        with Session(self.engine) as s:
            rows = list(s.scalars(select(AccessKeyRow)))
        keys: dict[str, AccessKey] = {}
        for row in rows:
            try:
                secret = self.sealer.unseal(row.sealed_secret)
            except ValueError:
                log.error("access key %s cannot be unsealed with this server's master key; ignored", row.access_key_id)
                continue
            old = self._keys.get(row.access_key_id)
            keys[row.access_key_id] = old if old is not None and old.secret == secret else AccessKey(
                row.access_key_id, secret, "user", row.created_ms, row.description
            )
        with self._lock:
            self._keys = keys
            self._last_reload = time.monotonic()

    def verify_secret(self, access_key_id: str, secret: str) -> bool:
        """Whether `secret` is the secret of a long-term key (for logins, e.g. the dashboard). Constant time."""
        key = self.lookup(access_key_id)
        known = key if key is not None and key.kind != "session" else self.decoy
        match = hmac.compare_digest(hashlib.sha256(known.secret.encode()).digest(),
                                    hashlib.sha256(secret.encode()).digest())
        return match and known is not self.decoy

    # ---------------------------------------------------------------- management

    def create(self, description: str = "") -> dict[str, Any]:
        """A new long-term key with full access; the only time its secret is shown."""
        if len(description) > 256:
            raise InvalidParameterValue("Description must be at most 256 characters")
        akid, secret = new_access_key_id(), new_secret()
        now_ms = int(time.time() * 1000)
        with Session(self.engine) as s, s.begin():
            s.add(AccessKeyRow(access_key_id=akid, sealed_secret=self.sealer.seal(secret),
                               description=description, created_ms=now_ms))
        key = AccessKey(akid, secret, "user", now_ms, description)
        with self._lock:
            self._keys = {**self._keys, akid: key}
        return {**key.describe(), "SecretAccessKey": secret}

    def list(self) -> list[dict[str, Any]]:
        self.reload()
        return [self.admin.describe(), *(k.describe() for k in sorted(self._keys.values(),
                                                                      key=lambda k: k.created_ms))]

    def delete(self, access_key_id: str) -> None:
        if access_key_id == self.admin.access_key_id:
            raise InvalidParameterValue(
                f"The admin key lives in {self.credentials_path}; replace that file and restart to rotate it."
            )
        with Session(self.engine) as s, s.begin():
            row = s.get(AccessKeyRow, access_key_id)
            if row is None:
                raise ResourceNotFound(f"Access key not found: {access_key_id}")
            s.delete(row)
        with self._lock:
            self._keys = {k: v for k, v in self._keys.items() if k != access_key_id}

    # ---------------------------------------------------------------- function environments

    def issue_session(self, function_name: str, role: str | None = None,
                      environment_id: str | None = None) -> AccessKey:
        """Short-lived credentials for one environment of `function_name`; revoke them when it ends."""
        key = AccessKey(
            new_access_key_id("NSIA"), new_secret(), "session", int(time.time() * 1000),
            f"environment of {function_name}", session_token=secrets.token_urlsafe(48),
            expires_at=time.time() + self.settings.function_credentials_ttl,
            function_name=function_name, role=role, environment_id=environment_id,
        )
        with self._lock:
            self._sessions[key.access_key_id] = key
        return key

    def revoke(self, access_key_id: str) -> None:
        with self._lock:
            self._sessions.pop(access_key_id, None)

    def revoke_function(self, function_name: str) -> None:
        """Revoke every session key of a function (e.g. when it is deleted)."""
        with self._lock:
            self._sessions = {k: v for k, v in self._sessions.items() if v.function_name != function_name}

    # ---------------------------------------------------------------- code download links

    def code_token(self, digest: str, expires: int) -> str:
        """The signature of a code download link (GetFunction's Code.Location), valid until `expires`."""
        return hmac.new(self.sealer.token_key, f"{digest}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def check_code_token(self, digest: str, expires: str, token: str) -> bool:
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(self.code_token(digest, int(expires)), token)

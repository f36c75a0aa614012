"""All of nimbus's settings in one place: every limit and default, overridable by `NIMBUS_*` env vars
and by the CLI flags of `nimbus server` (which write into the same object)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class Settings(BaseSettings):
    """Server settings. Defaults work on a laptop; names map to `NIMBUS_<NAME>` env vars."""

    model_config = SettingsConfigDict(env_prefix="NIMBUS_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 9000
    data_dir: Path = Path("./data")
    database_url: str | None = None  # default: sqlite in data_dir
    region: str = "us-east-1"
    account_id: str = Field(default="000000000000", pattern=r"^\d{12}$")
    public_url: str | None = None  # base URL clients should use (Code.Location etc.)

    # Isolation
    isolation: Literal["auto", "namespaces", "process"] = "auto"
    idle_timeout: float = 300.0  # seconds an idle warm environment is kept
    init_timeout: float = 10.0  # seconds allowed for the INIT phase

    # Lambda's limits (AWS defaults)
    memory_min: int = 128
    memory_max: int = 10240
    timeout_max: int = 900
    env_vars_max_bytes: int = 4096
    zip_max_bytes: int = 50 * MB
    unzipped_max_bytes: int = 250 * MB
    request_body_max_bytes: int = 70 * MB  # base64 of a 50 MB zip inside JSON
    ephemeral_min: int = 512
    ephemeral_max: int = 10240
    layers_max: int = 5
    sync_payload_max_bytes: int = 6 * MB
    async_payload_max_bytes: int = 256 * 1024
    async_max_event_age: int = 21600  # seconds an accepted Event may wait for capacity
    log_tail_bytes: int = 4096

    # Concurrency
    account_concurrency: int = 1000
    min_unreserved_concurrency: int = 100
    scaling_rate: int = 1000  # new environments per function per scaling_window
    scaling_window: float = 10.0
    pids_max: int = 1024

    # Logs
    log_retention_days: int = 30

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Paths derived from it reach code running elsewhere (sandboxes with their own working directory).
        return value.expanduser().resolve()

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: the configured one, or SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'nimbus.db').resolve()}"

    def base_url(self) -> str:
        """The URL clients reach this server at."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

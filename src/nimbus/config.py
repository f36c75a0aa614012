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
    database_busy_timeout: float = 30.0  # seconds a statement waits for a lock held by another process (SQLite)
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
    request_body_max_bytes: int = 70167211  # AWS's CreateFunction limit: base64 of a 50 MB zip inside JSON
    ephemeral_min: int = 512
    ephemeral_max: int = 10240
    layers_max: int = 5
    sync_payload_max_bytes: int = 6 * MB
    async_payload_max_bytes: int = 1 * MB  # AWS raised it from 256 KB in October 2025
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

    # Seconds a function stays Pending after CreateFunction / InProgress after an update before it settles
    # (issue 21, control/lifecycle.py); AWS takes about a second, nimbus as long as its background step.
    lifecycle_delay: float = Field(default=0.0, ge=0.0)

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

    # Authentication and function URLs (issue 7)
    auth: Literal["sigv4", "none"] = "sigv4"  # none: the API answers anyone (local experiments only)
    insecure: bool = False  # allow auth none on a non-loopback address
    auth_max_skew: int = 900  # seconds a signed request's X-Amz-Date may differ from the server's clock
    # Where function URLs are reached; `{url_id}`, `{region}` and `{port}` are filled in. Default:
    # http://{url_id}.lambda-url.{region}.localhost:{port}/ (browsers and curl resolve *.localhost to loopback).
    function_url_template: str | None = None
    function_credentials_ttl: int = 43200  # seconds a function environment's credentials stay valid

    # Observability and cost (issue 8)
    metrics: bool = True  # per-invocation metrics, metering and tracing hooks (false: off, for comparison)
    metering_flush_interval: float = 5.0  # seconds between writes of metering aggregates to the database
    tracing_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)  # Active tracing without a caller decision
    dashboard_session_hours: float = 12.0  # lifetime of a dashboard login

    # Async invocation pipeline (issue 4): durable event queue, dispatcher, retries (see docs/async.md)
    async_retry_delays: str = Field(default="60,120", pattern=r"^\s*\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*\s*$")
    async_throttle_backoff_min: float = 1.0  # seconds: first requeue delay after a throttle/platform error
    async_throttle_backoff_max: float = 300.0  # seconds: the backoff's cap
    async_event_age_min: int = Field(default=60, ge=1)  # lowest MaximumEventAgeInSeconds accepted (AWS: 60)
    async_max_concurrency: int = Field(default=32, ge=1)  # async deliveries in flight, all functions together
    async_lease_margin: float = 60.0  # seconds a delivery's lease outlives the function's timeout + INIT
    async_poll_interval: float = 1.0  # seconds between scans of the queue (due retries, other nodes' events)
    async_queue_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"  # SQLite; FULL: survive OS crashes too
    async_busy_intake_rate: float = 1000.0  # events/s accepted above which deliveries yield to the intake
    async_busy_delivery_rate: float = 500.0  # deliveries started per second at most while the intake is busy

    def async_retry_delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1-based) after a function error; the last delay repeats."""
        delays = [float(d) for d in self.async_retry_delays.split(",")]
        return delays[min(attempt, len(delays)) - 1]

    # Layers and response streaming (issue 6b)
    stream_response_max_bytes: int = 200 * MB  # per streamed response (AWS's limit today; 20 MB until 2025)

    # Snapshot cold starts and provisioned concurrency (issue 5, docs/coldstarts.md)
    zygotes: bool = True  # Python environments fork from an initialized zygote per version (false: fresh starts)
    zygote_spares: int = 1  # forks kept ready per zygote (in their cgroups): a cold start skips fork + cgroup move
    zygote_idle_timeout: float | None = None  # seconds a zygote without environments is kept (None: idle_timeout)

    # SQS-compatible queue service (issue 15, docs/sqs.md)
    sqs_max_message_bytes: int = Field(default=1048576, ge=1024)  # 1 MiB since August 2025 (was 256 KiB)
    sqs_max_in_flight: int = Field(default=120000, ge=1)  # standard queue in-flight cap (short polls: OverLimit)
    # Outbound network of environments (issue 14, docs/network.md)
    network: Literal["auto", "veth", "pasta", "none"] = "auto"  # auto: veth as root, else pasta, else none
    network_deny: str = ""  # CIDRs (comma/space separated) no function may reach, on top of link-local
    network_dns: str = ""  # nameservers for sandboxes (default: the host's /etc/resolv.conf)
    network_subnet: str = "100.96.0.0/16"  # addresses of the rootful veth pairs (a /31 per environment)
    network_spares: int = Field(default=2, ge=0)  # namespaces kept prepared per network policy
    # Opt-in (issue 14): every Python version forks from a post-INIT snapshot (one INIT per version, restore
    # semantics as SnapStart) instead of running INIT in each environment (AWS's behaviour, the default)
    zygote_snapshots: bool = False
    # Runtimes found on this host (nimbus/runtimes.py; docs/runtimes.md). A runtime's interpreter can also be
    # named per runtime id: NIMBUS_RUNTIME_PYTHON3_12=/path/to/python3.12, NIMBUS_RUNTIME_NODEJS22_X=/path/to/node.
    python_search_path: str = ""  # extra directories (":"-separated) searched for python3.X before PATH
    node: str | None = None  # the node executable for the Node.js runtimes (default: `node` on PATH)
    node_ric_dir: Path | None = None  # AWS's aws-lambda-ric installations (default: scripts/install-node-ric.sh's)
    node_runtimes_dir: Path | None = None  # Node.js majors the host lacks (default: install-node-ric.sh's)

    # Container-image functions (issue 19, docs/images.md)
    registry_insecure: str = ""  # registries (host[:port], comma-separated) reached without TLS checks (plain HTTP)
    registry_auth_file: Path | None = None  # containers-auth.json with registry credentials (skopeo's --authfile)
    code_gc_interval: float = 3600.0  # seconds between collections of unused zip blobs, trees and images (0: off)
    code_gc_min_age: float = 3600.0  # seconds an unreferenced item is kept (uploads commit their row after storing)


def runtime_override(runtime: str) -> str | None:
    """`NIMBUS_RUNTIME_<ID>`: the interpreter or executable configured for one runtime id (a family of names
    Settings cannot declare field by field)."""
    import os
    import re

    return os.environ.get("NIMBUS_RUNTIME_" + re.sub(r"[^A-Z0-9]", "_", runtime.upper()))

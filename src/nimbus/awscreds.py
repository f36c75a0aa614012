"""AWS shared-credentials files (`[profile]` with aws_access_key_id / aws_secret_access_key): the format of the
admin key file in the data dir, read by the server and by the CLI. Kept free of heavy imports (the CLI)."""

from __future__ import annotations

import configparser
from pathlib import Path

CREDENTIALS_FILE = "credentials"  # in the data dir
PROFILE = "nimbus"


def read_credentials_file(path: Path, profile: str = PROFILE) -> tuple[str, str] | None:
    """(access key id, secret) from an AWS shared-credentials file, or None."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text())
    except (OSError, configparser.Error):
        return None
    if not parser.has_section(profile):
        return None
    akid = parser.get(profile, "aws_access_key_id", fallback=None)
    secret = parser.get(profile, "aws_secret_access_key", fallback=None)
    return (akid, secret) if akid and secret else None

"""AWS Signature Version 4, the arithmetic only: canonical requests, derived signing keys, signatures. Shared by
the server's verifier (`api/auth.py`) and the CLI's signer (`cli/client.py`); no I/O, no state.

Paths are canonicalized as AWS does for every service but S3: the path as sent (already percent-encoded) with
dot segments removed, then percent-encoded once more. Query strings are canonicalized per the specification
(decode, RFC 3986 encode, sort); `raw_query_canonical` gives botocore's variant (pairs sorted as sent), which is
the same string whenever the client encoded canonically.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key derived from a secret for one day, region and service (`kSigning`)."""
    k = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    k = hmac.digest(k, region.encode(), "sha256")
    k = hmac.digest(k, service.encode(), "sha256")
    return hmac.digest(k, b"aws4_request", "sha256")


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a raw (as sent, percent-encoded) path: dot segments and repeated slashes removed
    (RFC 3986 5.2.4, as AWS requires), then percent-encoded once more."""
    if not raw_path:
        return "/"
    if "/." in raw_path or "//" in raw_path:
        kept: list[str] = []
        for segment in raw_path.split("/"):
            if segment == "..":
                if kept:
                    kept.pop()
            elif segment and segment != ".":
                kept.append(segment)
        lead = "/" if raw_path.startswith("/") else ""
        tail = "/" if raw_path.endswith("/") and kept else ""
        raw_path = lead + "/".join(kept) + tail
    return quote(raw_path, safe="/~")


def _pairs(raw_query: str, drop: str | None) -> list[tuple[str, str]]:
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if drop is not None and key == drop:
            continue
        pairs.append((key, value))
    return pairs


def canonical_query(raw_query: str, drop: str | None = None) -> str:
    """The canonical query string per the specification; `drop` leaves out one key (X-Amz-Signature)."""
    if not raw_query:
        return ""
    encoded = [
        (quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~")) for k, v in _pairs(raw_query, drop)
    ]
    return "&".join(f"{k}={v}" for k, v in sorted(encoded))


def raw_query_canonical(raw_query: str, drop: str | None = None) -> str:
    """botocore's canonical query for a URL it built itself: the pairs as sent, sorted."""
    if not raw_query:
        return ""
    return "&".join(f"{k}={v}" for k, v in sorted(_pairs(raw_query, drop)))


def canonical_headers(headers: Iterable[tuple[str, str]], signed: list[str]) -> str:
    """`name:value\\n` for each signed header (values trimmed, inner whitespace collapsed, repeats joined)."""
    return canonical_headers_raw(((n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers), signed)


def canonical_headers_raw(headers: Iterable[tuple[bytes, bytes]], signed: list[str]) -> str:
    """`canonical_headers` over raw (lower-case) header names and values, as ASGI gives them: only the signed
    ones are decoded (the server verifies every request)."""
    wanted = {name.encode("latin-1"): name for name in signed}
    values: dict[str, list[str]] = {}
    for name, value in headers:
        key = wanted.get(name)
        if key is not None:
            values.setdefault(key, []).append(" ".join(value.decode("latin-1").split()))
    return "".join(f"{name}:{','.join(values.get(name, ()))}\n" for name in signed)


def canonical_request(method: str, uri: str, query: str, headers: str, signed: list[str], payload_hash: str) -> str:
    return f"{method}\n{uri}\n{query}\n{headers}\n{';'.join(signed)}\n{payload_hash}"


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(key: bytes, to_sign: str) -> str:
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def sign(
    credentials: Credentials,
    method: str,
    host: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    region: str,
    service: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers to add to a request to sign it: X-Amz-Date, X-Amz-Content-SHA256, Authorization and, for
    temporary credentials, X-Amz-Security-Token. `headers` are the ones already on the request (all signed,
    with `host` added)."""
    moment = (now or datetime.now(UTC)).strftime(AMZ_DATE_FORMAT)
    payload_hash = hashlib.sha256(body).hexdigest()
    added = {"x-amz-date": moment, "x-amz-content-sha256": payload_hash}
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token
    merged = {k.lower(): v for k, v in headers.items()}
    merged.update(added)
    merged["host"] = host
    signed = sorted(merged)
    canonical = canonical_request(
        method.upper(), canonical_uri(raw_path), canonical_query(raw_query),
        canonical_headers(merged.items(), signed), signed, payload_hash,
    )
    scope = f"{moment[:8]}/{region}/{service}/aws4_request"
    sig = signature(signing_key(credentials.secret_access_key, moment[:8], region, service),
                    string_to_sign(moment, scope, canonical))
    added["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={sig}"
    )
    return added

"""Dashboard sessions: HMAC-signed, expiring tokens."""

from __future__ import annotations

from nimbus.api.dashboard import check_session, make_session

KEY = b"k" * 32


def test_a_session_names_its_user_until_it_expires() -> None:
    token = make_session(KEY, "NKIAEXAMPLE", 3600, now=1000.0)
    assert check_session(KEY, token, now=1000.0) == "NKIAEXAMPLE"
    assert check_session(KEY, token, now=1000.0 + 3599) == "NKIAEXAMPLE"
    assert check_session(KEY, token, now=1000.0 + 3601) is None


def test_forged_or_foreign_tokens_are_refused() -> None:
    token = make_session(KEY, "alice", 3600, now=1000.0)
    payload, tag = token.split(".")
    assert check_session(b"x" * 32, token, now=1000.0) is None  # another server's key
    assert check_session(KEY, payload + "." + "0" * len(tag), now=1000.0) is None
    other = make_session(KEY, "mallory", 3600, now=1000.0).split(".")[0]
    assert check_session(KEY, other + "." + tag, now=1000.0) is None  # alice's tag on mallory's payload
    for junk in (None, "", "nodot", ".", "a.b"):
        assert check_session(KEY, junk, now=1000.0) is None

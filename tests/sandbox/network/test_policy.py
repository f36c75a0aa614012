"""Network policy from tags and settings, the rules it becomes, and the resolvers a sandbox gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.config import Settings
from nimbus.control.validation import check_tags
from nimbus.errors import InvalidParameterValue
from nimbus.sandbox.network import ALWAYS_DENIED, NetworkPolicy
from nimbus.sandbox.network.dns import sandbox_resolvers
from nimbus.sandbox.network.veth import policy_ruleset


def test_default_policy_denies_link_local_and_the_servers_list() -> None:
    p = NetworkPolicy.from_tags({}, Settings(network_deny="10.0.0.0/8, 192.168.0.0/16"))
    assert p.mode == "default" and p.allow == ()
    assert {str(c) for c in p.deny} >= {"169.254.0.0/16", "10.0.0.0/8", "192.168.0.0/16"}


def test_tags_narrow_and_none() -> None:
    s = Settings()
    p = NetworkPolicy.from_tags({"nimbus:network:allow": "203.0.113.0/24", "nimbus:network:deny": "203.0.113.7"}, s)
    assert [str(c) for c in p.allow] == ["203.0.113.0/24"] and "203.0.113.7/32" in {str(c) for c in p.deny}
    assert NetworkPolicy.from_tags({"nimbus:network": "none"}, s).mode == "none"
    assert NetworkPolicy.from_tags({}, Settings(network="none")).mode == "none"
    assert NetworkPolicy.from_tags({}, s) == NetworkPolicy.from_tags({"other": "x"}, s)  # one pool


@pytest.mark.parametrize("tags", [{"nimbus:network": "vpc"}, {"nimbus:network:allow": "10.0.0.0/33"},
                                  {"nimbus:network:deny": "example.com"}])
def test_bad_network_tags_are_invalid_parameter_values(tags: dict[str, str]) -> None:
    with pytest.raises(InvalidParameterValue):
        check_tags(tags)


def test_ruleset_allows_dns_then_denies_then_allow_list() -> None:
    p = NetworkPolicy(allow=tuple(NetworkPolicy.from_tags({"nimbus:network:allow": "203.0.113.0/24"},
                                                          Settings()).allow), deny=ALWAYS_DENIED)
    rules = policy_ruleset(p, ["192.0.2.53"])
    lines = [line.strip() for line in rules.splitlines()]
    dns = next(i for i, line in enumerate(lines) if "dport 53 accept" in line)
    deny = next(i for i, line in enumerate(lines) if "169.254.0.0/16" in line)
    allow = next(i for i, line in enumerate(lines) if "203.0.113.0/24" in line)
    assert dns < deny < allow and lines[allow + 1].startswith("reject")


def test_resolvers_skip_loopback_stubs(tmp_path: Path) -> None:
    stub, upstream = tmp_path / "stub", tmp_path / "upstream"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    upstream.write_text("nameserver 192.0.2.53\nnameserver ::1\n")
    assert sandbox_resolvers("", (stub, upstream)) == ["192.0.2.53"]
    assert sandbox_resolvers("198.51.100.1, 198.51.100.2", (stub,)) == ["198.51.100.1", "198.51.100.2"]

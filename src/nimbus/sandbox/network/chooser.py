"""Which network provider runs on this host: `NIMBUS_NETWORK=auto|veth|pasta|none` and why."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from nimbus.sandbox.network import NetworkProvider, NetworkUnavailable
from nimbus.sandbox.network.none import NoNetwork

if TYPE_CHECKING:
    from nimbus.config import Settings


def veth_missing() -> str | None:
    """Why the rootful veth provider cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` not installed (scripts/install-system-deps.sh installs iproute2 and nftables)"
    return None


def choose(settings: Settings) -> NetworkProvider:
    """The provider `settings.network` asks for (`auto`: veth when root with ip + nft, else pasta when
    installed, else none), with its reason. An explicit choice that cannot run raises NetworkUnavailable."""
    wanted = settings.network
    if wanted == "none":
        return NoNetwork("NIMBUS_NETWORK=none")
    if settings.isolation == "process":
        return NoNetwork("the process backend has no network namespaces")
    missing = veth_missing()
    if wanted == "veth" or (wanted == "auto" and missing is None):
        if missing is not None:
            raise NetworkUnavailable(f"NIMBUS_NETWORK=veth: {missing}")
        from nimbus.sandbox.network.veth import VethNetwork

        return VethNetwork(settings, "root, ip and nft present" if wanted == "auto" else "NIMBUS_NETWORK=veth")
    pasta_missing = pasta_unavailable()
    if wanted == "pasta" or (wanted == "auto" and pasta_missing is None):
        if pasta_missing is not None:
            raise NetworkUnavailable(f"NIMBUS_NETWORK=pasta: {pasta_missing}")
        from nimbus.sandbox.network.pasta import PastaNetwork

        why = f"rootless: veth unavailable ({missing})" if wanted == "auto" else "NIMBUS_NETWORK=pasta"
        return PastaNetwork(settings, why)
    return NoNetwork(f"no network provider: veth: {missing}; pasta: {pasta_missing}")


def pasta_unavailable() -> str | None:
    """Why the rootless pasta provider cannot run here, or None when it can."""
    if os.geteuid() == 0:
        return "running as root (pasta drops to nobody; use veth)"
    for tool in ("pasta", "nft", "ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"`{tool}` not installed (scripts/install-system-deps.sh installs passt, nftables, iproute2)"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "true"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return "unprivileged user namespaces are disabled"
    return None


choose_provider = choose  # the name platform.py uses

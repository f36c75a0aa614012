"""Which isolation backend runs: `choose()` picks one from settings.isolation (`namespaces` wherever it
works, else `process`) and always says why. Its own module so that the backends' common interface
(`backends/__init__.py`) imports none of them."""

from __future__ import annotations

import logging

from nimbus.config import Settings
from nimbus.sandbox.backends import Backend, BackendUnavailable
from nimbus.sandbox.backends.namespaces import NamespacesBackend
from nimbus.sandbox.backends.process import ProcessBackend

log = logging.getLogger(__name__)


def choose(settings: Settings) -> tuple[Backend, str]:
    """The backend for settings.isolation and the reason, loudly stated when isolation is missing.

    Raises BackendUnavailable when `namespaces` is requested explicitly but cannot work.
    """
    if settings.isolation == "process":
        return ProcessBackend(settings), "isolation=process requested: NO isolation between functions and host"
    try:
        backend = NamespacesBackend.probe(settings)
    except BackendUnavailable as e:
        if settings.isolation == "namespaces":
            raise
        reason = (
            f"WARNING: namespaces isolation unusable ({e}); falling back to the process backend: "
            "functions run as plain subprocesses with NO isolation from each other or the host"
        )
        log.warning(reason)
        return ProcessBackend(settings), reason
    return backend, backend.description

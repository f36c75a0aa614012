"""Where the sandbox finds a runtime's interpreter installation. The catalogue itself (runtime ids, what this
host can run) is `nimbus.runtimes`, re-exported here for the sandbox's own modules."""

from __future__ import annotations

from pathlib import Path

from nimbus.runtimes import KNOWN_RUNTIMES, PYTHON_IDS, SUPPORTED_PYTHON, available_runtimes, unavailable_reason

__all__ = ["KNOWN_RUNTIMES", "PYTHON_IDS", "SUPPORTED_PYTHON", "available_runtimes", "python_prefix",
           "unavailable_reason"]

def python_prefix(interpreter: Path) -> Path:
    """The installation prefix that holds the interpreter's standard library (bind-mounted in sandboxes)."""
    real = interpreter.resolve()
    return real.parent.parent

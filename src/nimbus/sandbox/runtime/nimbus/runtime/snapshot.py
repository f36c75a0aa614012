"""Snapshot runtime hooks: `register_before_snapshot(fn, *args, **kwargs)` and
`register_after_restore(fn, *args, **kwargs)` (both usable as decorators). Same registry as AWS's
`snapshot_restore_py`, so hooks registered through either name run."""

from snapshot_restore_py import (  # noqa: F401
    get_after_restore,
    get_before_snapshot,
    register_after_restore,
    register_before_snapshot,
)

__all__ = ["register_before_snapshot", "register_after_restore"]

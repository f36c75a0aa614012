"""Runtime hooks for snapshots (the names of AWS's `snapshot_restore_py`), available inside nimbus's Python
runtime. Stdlib only.

    from snapshot_restore_py import register_before_snapshot, register_after_restore

    @register_after_restore
    def reconnect():
        ...

Before-snapshot hooks run once, at the end of INIT in the version's zygote, in reverse order of
registration; after-restore hooks run in every environment forked from it, in order of registration, before
its first invocation. A failing hook fails INIT (Runtime.BeforeSnapshotError) or the new environment
(Runtime.AfterRestoreError). Environments started fresh (no zygote) run neither.
"""

_before_snapshot_registry = []
_after_restore_registry = []


def register_before_snapshot(func, *args, **kwargs):
    """Run `func(*args, **kwargs)` before the snapshot is taken. Returns `func` (usable as a decorator)."""
    _before_snapshot_registry.append((func, args, kwargs))
    return func


def register_after_restore(func, *args, **kwargs):
    """Run `func(*args, **kwargs)` in each environment restored from the snapshot. Returns `func`."""
    _after_restore_registry.append((func, args, kwargs))
    return func


def get_before_snapshot():
    return _before_snapshot_registry


def get_after_restore():
    return _after_restore_registry

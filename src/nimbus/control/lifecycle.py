"""The lifecycle states AWS reports for a function (issue 21): `Pending` right after CreateFunction, then
`Active`; `LastUpdateStatus: InProgress` right after an update, then `Successful`. The step from one to the
other runs in the background (the `Settler`), and every step gives the version a new RevisionId, as on AWS.

The transient state is stored in the version's configuration under an internal key (never shown to
clients), so a state survives a restart: the registry settles whatever it finds unsettled when it starts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nimbus.lifecycle")

KEY = "_lifecycle"  # internal configuration key: absent when the version is settled
CREATING = "creating"
UPDATING = "updating"

# AWS's texts, recorded in LocalStack's AWS-validated snapshots (tests/aws/services/lambda_/
# test_lambda_api.snapshot.json, test_function_lifecycle): an update reports the same reason as a create.
BEING_CREATED = "The function is being created."
REASON_CODE = "Creating"


def state_fields(lifecycle: str | None) -> dict[str, str]:
    """The State/LastUpdateStatus fields of a FunctionConfiguration for a stored lifecycle value."""
    if lifecycle == CREATING:
        # No LastUpdateStatus at all while the function is being created.
        return {"State": "Pending", "StateReason": BEING_CREATED, "StateReasonCode": REASON_CODE}
    if lifecycle == UPDATING:
        return {
            "State": "Active",
            "LastUpdateStatus": "InProgress",
            "LastUpdateStatusReason": BEING_CREATED,
            "LastUpdateStatusReasonCode": REASON_CODE,
        }
    return {"State": "Active", "LastUpdateStatus": "Successful"}


def pending_message() -> str:
    """ResourceConflictException text for invoking or changing a function that is still `Pending`
    (AWS Lambda developer guide, troubleshooting-invocation)."""
    return "The operation cannot be performed at this time. The function is currently in the following state: Pending"


def in_progress_message(function_arn: str) -> str:
    """ResourceConflictException text for a change while an update is in progress (LocalStack snapshot
    test_lambda_concurrent_code_updates, recorded against AWS)."""
    return f"The operation cannot be performed at this time. An update is in progress for resource: {function_arn}"


def conflict(config: dict[str, Any], function_arn: str) -> str | None:
    """The conflict message for changing a version in this state, or None when it may change."""
    state = config.get(KEY)
    if state == CREATING:
        return pending_message()
    if state == UPDATING:
        return in_progress_message(function_arn)
    return None


class Settler:
    """Runs `settle(function_name)` in one background thread, `delay` seconds after each `schedule`.

    The delay is nimbus's `lifecycle_delay` setting. With the default 0 the step runs right after the
    answer, in the caller's thread, so scripts that invoke right after CreateFunction work; AWS takes a
    second or so, which `NIMBUS_LIFECYCLE_DELAY=1` reproduces for testing waiters and retries."""

    def __init__(self, settle: Callable[[str], None], delay: float) -> None:
        self._settle = settle
        self._delay = delay
        self._due: dict[str, float] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, name: str) -> None:
        if self._delay <= 0:
            # No delay: settle now, in the caller's thread, after its answer (still Pending/InProgress)
            # was rendered; the next request sees Active/Successful, deterministically.
            self._run_one(name)
            return
        with self._cond:
            if self._closed:
                return
            self._due[name] = time.monotonic() + self._delay
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nimbus-lifecycle", daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    ready = [n for n, at in self._due.items() if at <= now]
                    if ready:
                        break
                    wait = min(self._due.values(), default=now + 60) - now
                    self._cond.wait(timeout=max(wait, 0.001))
                if self._closed:
                    return
                for name in ready:
                    del self._due[name]
            for name in ready:
                self._run_one(name)

    def _run_one(self, name: str) -> None:
        try:
            self._settle(name)
        except Exception:  # a database hiccup: the next start settles it
            log.exception("could not settle the state of function %s", name)

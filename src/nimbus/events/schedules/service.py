"""EventBridge Scheduler: schedules and schedule groups (create, get, update as a full replace, delete, list,
tags) with AWS's validation, persisted in `sched_groups` / `sched_timers`, fired by the `TimerLoop`.

A tick of a schedule delivers `Target.Input` (after substituting the `<aws.scheduler.*>` context keywords),
or Scheduler's default notification when there is no Input, to the target: a Lambda function invoked
asynchronously through invoke/'s durable queue, a nimbus SQS queue, or an event bus. A delivery that fails
(the function or queue is missing) is retried with exponential backoff within the RetryPolicy
(MaximumRetryAttempts, MaximumEventAgeInSeconds), then sent to the DeadLetterConfig queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from typing import Any, ClassVar

from sqlalchemy import Engine, delete, insert, select, update

from nimbus.config import Settings
from nimbus.errors import LambdaError
from nimbus.events.schedules.expressions import InvalidExpression, parse, scheduled_time, zone_of
from nimbus.events.schedules.timers import Timer, TimerLoop, request_id_for
from nimbus.events.tables import GROUPS, TIMERS
from nimbus.events.targets import TargetError, Targets, supported_target

_NAME = re.compile(r"[0-9a-zA-Z\-_.]{1,64}")
_ROLE = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@\/-]+")
_SQS_ARN = re.compile(r"arn:aws[a-z-]*:sqs:[a-z0-9\-]+:\d{12}:[a-zA-Z0-9\-_]+(\.fifo)?")
DEFAULT_GROUP = "default"


class SchedulerError(LambdaError):
    """Scheduler's error shape: `X-Amzn-ErrorType: <Code>` and `{"Message": …}`."""

    code: ClassVar[str] = "ValidationException"

    def body(self) -> dict[str, Any]:
        return {"Message": self.message}

    def headers(self) -> dict[str, str]:
        return {"X-Amzn-ErrorType": self.code}


class SchedulerValidation(SchedulerError):
    status = 400
    code = "ValidationException"


class SchedulerNotFound(SchedulerError):
    status = 404
    code = "ResourceNotFoundException"


class SchedulerConflict(SchedulerError):
    status = 409
    code = "ConflictException"


def _epoch(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise SchedulerValidation(f"Invalid {name}.")


class Scheduler:
    def __init__(self, settings: Settings, engine: Engine, targets: Targets, timers: TimerLoop) -> None:
        self.settings = settings
        self.engine = engine
        self.targets = targets
        self.timers = timers

    # ----------------------------------------------------------------------------------- arns, keys

    def schedule_arn(self, group: str, name: str) -> str:
        return f"arn:aws:scheduler:{self.settings.region}:{self.settings.account_id}:schedule/{group}/{name}"

    def group_arn(self, name: str) -> str:
        return f"arn:aws:scheduler:{self.settings.region}:{self.settings.account_id}:schedule-group/{name}"

    @staticmethod
    def key(group: str, name: str) -> str:
        return f"schedule:{group}/{name}"

    # -------------------------------------------------------------------------------------- groups

    def _group_doc(self, conn: Any, name: str) -> dict[str, Any] | None:
        doc = conn.execute(select(GROUPS.c.doc).where(GROUPS.c.name == name)).scalar()
        if doc is None and name == DEFAULT_GROUP:
            now = time.time()
            doc = {"Name": name, "Arn": self.group_arn(name), "State": "ACTIVE", "CreationDate": now,
                   "LastModificationDate": now, "Tags": []}
            conn.execute(insert(GROUPS).values(name=name, doc=doc))
        return None if doc is None else dict(doc)

    async def create_group(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        self._check_name(name, "Name")
        tags = self._tags(request.get("Tags", []))

        def write() -> dict[str, Any]:
            with self.engine.begin() as conn:
                if self._group_doc(conn, name) is not None:
                    raise SchedulerConflict(f"Schedule group {name} already exists.")
                now = time.time()
                doc = {"Name": name, "Arn": self.group_arn(name), "State": "ACTIVE", "CreationDate": now,
                       "LastModificationDate": now, "Tags": tags}
                conn.execute(insert(GROUPS).values(name=name, doc=doc))
                return {"ScheduleGroupArn": doc["Arn"]}

        return await asyncio.to_thread(write)

    async def get_group(self, name: str) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            with self.engine.begin() as conn:
                doc = self._group_doc(conn, name)
            if doc is None:
                raise SchedulerNotFound(f"Schedule group {name} does not exist.")
            doc.pop("Tags", None)
            return doc

        return await asyncio.to_thread(read)

    async def delete_group(self, name: str) -> dict[str, Any]:
        if name == DEFAULT_GROUP:
            raise SchedulerValidation("You cannot delete the default group.")

        def write() -> list[str]:
            with self.engine.begin() as conn:
                if self._group_doc(conn, name) is None:
                    raise SchedulerNotFound(f"Schedule group {name} does not exist.")
                prefix = self.key(name, "")
                keys = list(conn.execute(select(TIMERS.c.key).where(TIMERS.c.key.startswith(prefix))).scalars())
                for k in keys:
                    self.timers.remove_row(conn, k)
                conn.execute(delete(GROUPS).where(GROUPS.c.name == name))
                return keys

        for k in await asyncio.to_thread(write):
            self.timers.forget(k)
        return {}

    async def list_groups(self, prefix: str | None, max_results: int | None, token: str | None) -> dict[str, Any]:
        def read() -> list[dict[str, Any]]:
            with self.engine.begin() as conn:
                self._group_doc(conn, DEFAULT_GROUP)
                return [dict(d) for d in conn.execute(select(GROUPS.c.doc).order_by(GROUPS.c.name)).scalars()]

        docs = [d for d in await asyncio.to_thread(read) if not prefix or d["Name"].startswith(prefix)]
        page, nxt = _page(docs, max_results, token)
        out: dict[str, Any] = {"ScheduleGroups": [{k: v for k, v in d.items() if k != "Tags"} for d in page]}
        if nxt:
            out["NextToken"] = nxt
        return out

    # ---------------------------------------------------------------------------------------- tags

    def _group_of_arn(self, arn: str) -> str:
        marker = ":schedule-group/"
        if marker not in arn:
            raise SchedulerValidation(f"Invalid ARN {arn}: tags are kept on schedule groups.")
        return arn.split(marker, 1)[1]

    async def tag(self, arn: str, request: dict[str, Any]) -> dict[str, Any]:
        name = self._group_of_arn(arn)
        tags = self._tags(request.get("Tags"))

        def write() -> None:
            with self.engine.begin() as conn:
                doc = self._group_doc(conn, name)
                if doc is None:
                    raise SchedulerNotFound(f"Schedule group {name} does not exist.")
                merged = {t["Key"]: t["Value"] for t in doc.get("Tags", [])}
                merged.update({t["Key"]: t["Value"] for t in tags})
                doc["Tags"] = [{"Key": k, "Value": v} for k, v in merged.items()]
                conn.execute(update(GROUPS).where(GROUPS.c.name == name).values(doc=doc))

        await asyncio.to_thread(write)
        return {}

    async def untag(self, arn: str, keys: list[str]) -> dict[str, Any]:
        name = self._group_of_arn(arn)

        def write() -> None:
            with self.engine.begin() as conn:
                doc = self._group_doc(conn, name)
                if doc is None:
                    raise SchedulerNotFound(f"Schedule group {name} does not exist.")
                doc["Tags"] = [t for t in doc.get("Tags", []) if t["Key"] not in keys]
                conn.execute(update(GROUPS).where(GROUPS.c.name == name).values(doc=doc))

        await asyncio.to_thread(write)
        return {}

    async def list_tags(self, arn: str) -> dict[str, Any]:
        name = self._group_of_arn(arn)

        def read() -> dict[str, Any]:
            with self.engine.begin() as conn:
                doc = self._group_doc(conn, name)
            if doc is None:
                raise SchedulerNotFound(f"Schedule group {name} does not exist.")
            return {"Tags": doc.get("Tags", [])}

        return await asyncio.to_thread(read)

    # ----------------------------------------------------------------------------------- schedules

    async def create(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        return await self._put(name, request, create=True)

    async def update(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        return await self._put(name, request, create=False)

    async def _put(self, name: str, request: dict[str, Any], create: bool) -> dict[str, Any]:
        self._check_name(name, "Name")
        group = request.get("GroupName") or DEFAULT_GROUP
        self._check_name(group, "GroupName")
        doc = self._validate(name, group, request)
        timer = self._timer(doc)
        key = self.key(group, name)

        def write() -> None:
            with self.engine.begin() as conn:
                if self._group_doc(conn, group) is None:
                    raise SchedulerNotFound(f"Schedule group {group} does not exist.")
                old = conn.execute(select(TIMERS.c.doc).where(TIMERS.c.key == key)).scalar()
                token = request.get("ClientToken")
                if create and old is not None and token and old.get("_client_token") == token:
                    return  # a retried CreateSchedule (same ClientToken): the schedule it made
                if create and old is not None:
                    raise SchedulerConflict(f"Schedule {name} already exists.")
                doc["_client_token"] = token
                if not create and old is None:
                    raise SchedulerNotFound(f"Schedule {name} does not exist.")
                now = time.time()
                doc["CreationDate"] = old["CreationDate"] if old is not None else now
                doc["LastModificationDate"] = now
                if old is not None and "StartDate" not in doc:
                    timer.anchor_ms = int(old["_timer"]["anchor_ms"])
                    doc["_timer"]["anchor_ms"] = timer.anchor_ms
                self.timers.put(conn, timer, int(now * 1000))

        await asyncio.to_thread(write)
        if "CreationDate" in doc:  # written (not a retried create)
            self.timers.activate(timer)
        return {"ScheduleArn": doc["Arn"]}

    async def get(self, name: str, group: str | None) -> dict[str, Any]:
        group = group or DEFAULT_GROUP
        doc = await asyncio.to_thread(self._load, group, name)
        return _public(doc)

    def _load(self, group: str, name: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            doc = conn.execute(select(TIMERS.c.doc).where(TIMERS.c.key == self.key(group, name))).scalar()
        if doc is None:
            raise SchedulerNotFound(f"Schedule {name} does not exist.")
        return dict(doc)

    async def delete(self, name: str, group: str | None) -> dict[str, Any]:
        group = group or DEFAULT_GROUP
        key = self.key(group, name)

        def write() -> None:
            with self.engine.begin() as conn:
                if conn.execute(select(TIMERS.c.key).where(TIMERS.c.key == key)).scalar() is None:
                    raise SchedulerNotFound(f"Schedule {name} does not exist.")
                self.timers.remove_row(conn, key)

        await asyncio.to_thread(write)
        self.timers.forget(key)
        return {}

    async def list_schedules(self, group: str | None, prefix: str | None, state: str | None, max_results: int | None,
                   token: str | None) -> dict[str, Any]:
        if state is not None and state not in ("ENABLED", "DISABLED"):
            raise SchedulerValidation(f"Invalid State {state}.")

        def read() -> list[dict[str, Any]]:
            query = select(TIMERS.c.doc).where(TIMERS.c.kind == "schedule").order_by(TIMERS.c.key)
            if group:
                query = query.where(TIMERS.c.key.startswith(self.key(group, "")))
            with self.engine.connect() as conn:
                return [dict(d) for d in conn.execute(query).scalars()]

        docs = [d for d in await asyncio.to_thread(read)
                if (not prefix or d["Name"].startswith(prefix)) and (not state or d["State"] == state)]
        page, nxt = _page(docs, max_results, token)
        out: dict[str, Any] = {"Schedules": [
            {"Arn": d["Arn"], "Name": d["Name"], "GroupName": d["GroupName"], "State": d["State"],
             "CreationDate": d["CreationDate"], "LastModificationDate": d["LastModificationDate"],
             "Target": {"Arn": d["Target"]["Arn"]}} for d in page]}
        if nxt:
            out["NextToken"] = nxt
        return out

    async def overview(self) -> list[dict[str, Any]]:
        """Every schedule with its next fire time (the `nimbus schedules` table)."""

        def read() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [dict(d) for d in conn.execute(
                    select(TIMERS.c.doc).where(TIMERS.c.kind == "schedule").order_by(TIMERS.c.key)).scalars()]

        out = []
        for d in await asyncio.to_thread(read):
            nxt = self.timers.next_fire(self.key(d["GroupName"], d["Name"]))
            out.append({"Name": d["Name"], "GroupName": d["GroupName"], "State": d["State"],
                        "ScheduleExpression": d["ScheduleExpression"],
                        "ScheduleExpressionTimezone": d.get("ScheduleExpressionTimezone", "UTC"),
                        "Target": d["Target"]["Arn"], "NextFireTime": None if nxt is None else nxt / 1000})
        return out

    # ---------------------------------------------------------------------------------- validation

    @staticmethod
    def _check_name(name: Any, field: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SchedulerValidation(
                f"1 validation error detected: Value '{name}' at '{field}' failed to satisfy constraint: Member "
                "must satisfy regular expression pattern: [0-9a-zA-Z-_.]+")

    @staticmethod
    def _tags(tags: Any) -> list[dict[str, str]]:
        if tags is None:
            raise SchedulerValidation("Tags is required.")
        if not isinstance(tags, list) or len(tags) > 50:
            raise SchedulerValidation("Tags must be a list of at most 50 tags.")
        out = []
        for t in tags:
            if (not isinstance(t, dict) or not isinstance(t.get("Key"), str) or not isinstance(t.get("Value"), str)
                    or not 1 <= len(t["Key"]) <= 128 or not 1 <= len(t["Value"]) <= 256):
                raise SchedulerValidation("Each tag needs a Key (1-128 chars) and a Value (1-256 chars).")
            out.append({"Key": t["Key"], "Value": t["Value"]})
        return out

    def _validate(self, name: str, group: str, r: dict[str, Any]) -> dict[str, Any]:
        expression = r.get("ScheduleExpression")
        if not isinstance(expression, str) or not 1 <= len(expression) <= 256:
            raise SchedulerValidation("ScheduleExpression is required.")
        try:
            parsed = parse(expression)
        except InvalidExpression:
            raise SchedulerValidation(f"Invalid Schedule Expression {expression}.") from None
        tz = r.get("ScheduleExpressionTimezone") or "UTC"
        try:
            zone_of(tz)
        except InvalidExpression:
            raise SchedulerValidation(f"Invalid ScheduleExpressionTimezone {tz}.") from None
        window = r.get("FlexibleTimeWindow")
        if not isinstance(window, dict) or window.get("Mode") not in ("OFF", "FLEXIBLE"):
            raise SchedulerValidation("FlexibleTimeWindow.Mode must be OFF or FLEXIBLE.")
        minutes = window.get("MaximumWindowInMinutes")
        if window["Mode"] == "FLEXIBLE":
            if not isinstance(minutes, int) or not 1 <= minutes <= 1440:
                raise SchedulerValidation("MaximumWindowInMinutes must be between 1 and 1440 for a FLEXIBLE window.")
        elif minutes is not None:
            raise SchedulerValidation("MaximumWindowInMinutes is only allowed with Mode FLEXIBLE.")
        state = r.get("State") or "ENABLED"
        if state not in ("ENABLED", "DISABLED"):
            raise SchedulerValidation(f"Invalid State {state}.")
        after = r.get("ActionAfterCompletion") or "NONE"
        if after not in ("NONE", "DELETE"):
            raise SchedulerValidation(f"Invalid ActionAfterCompletion {after}.")
        start, end = _epoch(r.get("StartDate"), "StartDate"), _epoch(r.get("EndDate"), "EndDate")
        if start is not None and end is not None and end <= start:
            raise SchedulerValidation("The EndDate must be after the StartDate.")
        if end is not None and end < time.time() and not parsed.one_time:
            raise SchedulerValidation("The EndDate must be in the future.")
        description = r.get("Description")
        if description is not None and (not isinstance(description, str) or len(description) > 512):
            raise SchedulerValidation("Description must be at most 512 characters.")
        target = r.get("Target")
        if not isinstance(target, dict):
            raise SchedulerValidation("Target is required.")
        arn, role = target.get("Arn"), target.get("RoleArn")
        if not isinstance(arn, str) or not 1 <= len(arn) <= 1600:
            raise SchedulerValidation("Target.Arn is required.")
        if not isinstance(role, str) or not _ROLE.fullmatch(role):
            raise SchedulerValidation(
                f"1 validation error detected: Value '{role}' at 'target.roleArn' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: arn:aws[a-z-]*:iam::\\d{12}:role\\/[\\w+=,.@\\/-]+")
        if not supported_target(arn):
            raise SchedulerValidation(f"Invalid Target.Arn {arn}: nimbus delivers to Lambda functions, SQS queues "
                                      "and event buses.")
        if "Input" in target:
            text = target["Input"]
            if not isinstance(text, str) or not text:
                raise SchedulerValidation("Target.Input must be a non-empty string.")
            if ":lambda:" in arn:
                try:
                    json.loads(text)
                except ValueError:
                    raise SchedulerValidation("Target.Input must be valid JSON for a Lambda target.") from None
        retry = target.get("RetryPolicy") or {}
        attempts = retry.get("MaximumRetryAttempts", 185)
        age = retry.get("MaximumEventAgeInSeconds", 86400)
        if not isinstance(attempts, int) or not 0 <= attempts <= 185:
            raise SchedulerValidation("RetryPolicy.MaximumRetryAttempts must be between 0 and 185.")
        if not isinstance(age, int) or not 60 <= age <= 86400:
            raise SchedulerValidation("RetryPolicy.MaximumEventAgeInSeconds must be between 60 and 86400.")
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if dlq is not None and (not isinstance(dlq, str) or not _SQS_ARN.fullmatch(dlq)):
            raise SchedulerValidation("DeadLetterConfig.Arn must be the ARN of an SQS queue.")
        keep_target = {k: v for k, v in target.items() if k in (
            "Arn", "RoleArn", "Input", "RetryPolicy", "DeadLetterConfig", "SqsParameters", "EventBridgeParameters",
            "KinesisParameters", "EcsParameters", "SageMakerPipelineParameters")}
        keep_target["RetryPolicy"] = {"MaximumEventAgeInSeconds": age, "MaximumRetryAttempts": attempts}
        now_ms = int(time.time() * 1000)
        doc: dict[str, Any] = {
            "Arn": self.schedule_arn(group, name), "Name": name, "GroupName": group,
            "ScheduleExpression": expression, "ScheduleExpressionTimezone": tz,
            "FlexibleTimeWindow": {k: v for k, v in window.items() if k in ("Mode", "MaximumWindowInMinutes")},
            "State": state, "ActionAfterCompletion": after, "Target": keep_target,
        }
        for field in ("Description", "KmsKeyArn"):
            if r.get(field) is not None:
                doc[field] = r[field]
        if start is not None:
            doc["StartDate"] = start
        if end is not None:
            doc["EndDate"] = end
        doc["_timer"] = {
            "expression": expression, "timezone": tz,
            # Without a StartDate, rate ticks count from the creation time, on a whole second (the scheduled
            # time Scheduler shows has a precision of seconds).
            "anchor_ms": int(start * 1000) if start is not None and not parsed.one_time else now_ms // 1000 * 1000,
            "end_ms": int(end * 1000) if end is not None and not parsed.one_time else None,
            "window_ms": (minutes or 0) * 60_000 if window["Mode"] == "FLEXIBLE" else 0,
            "max_age_ms": age * 1000, "enabled": state == "ENABLED",
        }
        return doc

    def _timer(self, doc: dict[str, Any]) -> Timer:
        key = self.key(doc["GroupName"], doc["Name"])
        return TimerLoop.timer_from_row(key, "schedule", doc, None)

    # ------------------------------------------------------------------------------------ delivery

    def payload(self, doc: dict[str, Any], tick_ms: int, attempt: int) -> str:
        target = doc["Target"]
        text: str | None = target.get("Input")
        if text is None:
            return json.dumps({
                "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                "source": "aws.scheduler", "account": self.settings.account_id, "time": scheduled_time(tick_ms),
                "region": self.settings.region, "resources": [doc["Arn"]], "detail": "{}",
            })
        return (text.replace("<aws.scheduler.schedule-arn>", doc["Arn"])
                .replace("<aws.scheduler.scheduled-time>", scheduled_time(tick_ms))
                .replace("<aws.scheduler.execution-id>", str(uuid.uuid4()))
                .replace("<aws.scheduler.attempt-number>", str(attempt + 1)))

    async def deliver(self, timer: Timer, tick_ms: int, attempts: int) -> bool:
        """One delivery attempt of a tick; True when finished (delivered, or dead-lettered, or given up)."""
        doc = timer.doc
        target = doc["Target"]
        payload = self.payload(doc, tick_ms, attempts)
        group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
        bridge = target.get("EventBridgeParameters") or {}
        entry = {"Source": bridge.get("Source", "aws.scheduler"),
                 "DetailType": bridge.get("DetailType", "Scheduled Event")}
        try:
            await self.targets.deliver(target["Arn"], payload, request_id=request_id_for(timer.key, tick_ms)
                                       if attempts == 0 else None, group_id=group_id, entry=entry)
            return True
        except TargetError as exc:
            retry = target["RetryPolicy"]
            age_s = time.time() - tick_ms / 1000
            if attempts < retry["MaximumRetryAttempts"] and age_s < retry["MaximumEventAgeInSeconds"]:
                return False
            dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
            if dlq:
                from nimbus.events.sqs import MessageAttribute

                attrs = {
                    "ERROR_CODE": MessageAttribute("String", exc.code),
                    "ERROR_MESSAGE": MessageAttribute("String", exc.message[:1024]),
                    "EXHAUSTED_RETRY_CONDITION": MessageAttribute(
                        "String", "MaximumRetryAttempts" if attempts >= retry["MaximumRetryAttempts"]
                        else "MaximumEventAgeInSeconds"),
                    "RETRY_ATTEMPTS": MessageAttribute("Number", str(attempts)),
                    "TARGET_ARN": MessageAttribute("String", target["Arn"]),
                    "SCHEDULE_ARN": MessageAttribute("String", doc["Arn"]),
                }
                # If the dead-letter queue is gone too, the tick is dropped, as on AWS.
                with contextlib.suppress(TargetError):
                    await self.targets.send_queue(dlq, payload, attrs)
            return True

    async def after_last(self, timer: Timer) -> None:
        """ActionAfterCompletion DELETE: the schedule goes after its last tick."""
        if timer.doc.get("ActionAfterCompletion") == "DELETE":
            with contextlib.suppress(SchedulerNotFound):
                await self.delete(timer.doc["Name"], timer.doc["GroupName"])


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _page(docs: list[dict[str, Any]], max_results: int | None, token: str | None) -> tuple[list[dict[str, Any]],
                                                                                          str | None]:
    size = max_results or 100
    if not 1 <= size <= 100:
        raise SchedulerValidation("MaxResults must be between 1 and 100.")
    start = 0
    if token:
        try:
            start = int(token)
        except ValueError:
            raise SchedulerValidation("Invalid NextToken.") from None
    page = docs[start:start + size]
    return page, str(start + size) if start + size < len(docs) else None

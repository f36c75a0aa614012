"""EventBridge buses and rules: PutRule (EventPattern or ScheduleExpression), targets, Describe/List/Delete/
Enable/DisableRule, Create/Describe/Delete/ListEventBuses and PutEvents, persisted in `eb_buses` / `eb_rules`.

PutEvents matches each entry against the enabled rules of its bus (`events/pattern.py`) and delivers the
event document AWS documents (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`,
`resources`, `detail`), or the target's Input / InputPath / InputTransformer result, to every target before
it answers: Lambda targets get an asynchronous invocation on invoke/'s durable queue, queue targets a
message. Scheduled rules are timers of the `TimerLoop` and send AWS's "Scheduled Event" (source aws.events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import Engine, delete, insert, select, update

from nimbus.config import Settings
from nimbus.errors import LambdaError
from nimbus.events.pattern import InvalidPattern, compile_pattern
from nimbus.events.schedules.expressions import InvalidExpression, parse, scheduled_time
from nimbus.events.schedules.timers import Timer, TimerLoop, request_id_for
from nimbus.events.tables import BUSES, RULES
from nimbus.events.targets import TargetError, Targets, supported_target

DEFAULT_BUS = "default"
_RULE_NAME = re.compile(r"[\.\-_A-Za-z0-9]{1,64}")
_BUS_NAME = re.compile(r"[/\.\-_A-Za-z0-9]{1,256}")
_TARGET_ID = re.compile(r"[\.\-_A-Za-z0-9]{1,64}")
MAX_ENTRIES = 10


class EventsError(LambdaError):
    """EventBridge's error shape (AWS JSON 1.1): `{"__type": <code>, "message": …}`, HTTP 400."""

    status = 400
    code: ClassVar[str] = "ValidationException"

    def body(self) -> dict[str, Any]:
        return {"__type": self.code, "message": self.message}

    def headers(self) -> dict[str, str]:
        return {"x-amzn-ErrorType": self.code}


class EventsValidation(EventsError):
    code = "ValidationException"


class EventsNotFound(EventsError):
    code = "ResourceNotFoundException"


class EventsAlreadyExists(EventsError):
    code = "ResourceAlreadyExistsException"


class EventsPatternInvalid(EventsError):
    code = "InvalidEventPatternException"


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventBus:
    def __init__(self, settings: Settings, engine: Engine, targets: Targets, timers: TimerLoop) -> None:
        self.settings = settings
        self.engine = engine
        self.targets = targets
        self.timers = timers
        self._rules: dict[str, list[tuple[str, Any, dict[str, Any]]]] | None = None  # bus -> (name, pattern, doc)
        self.delivered = 0
        self.failed = 0

    # ----------------------------------------------------------------------------------------- arns

    def bus_arn(self, name: str) -> str:
        return f"arn:aws:events:{self.settings.region}:{self.settings.account_id}:event-bus/{name}"

    def rule_arn(self, bus: str, name: str) -> str:
        path = name if bus == DEFAULT_BUS else f"{bus}/{name}"
        return f"arn:aws:events:{self.settings.region}:{self.settings.account_id}:rule/{path}"

    def bus_name(self, value: Any) -> str:
        """A bus name from an EventBusName parameter (a name or an ARN)."""
        if value is None or value == "":
            return DEFAULT_BUS
        if not isinstance(value, str):
            raise EventsValidation("EventBusName must be a string.")
        if value.startswith("arn:"):
            if ":event-bus/" not in value:
                raise EventsValidation(f"Invalid event bus ARN {value}.")
            value = value.split(":event-bus/", 1)[1]
        if not _BUS_NAME.fullmatch(value):
            raise EventsValidation(f"Invalid event bus name {value}.")
        return str(value)

    # ---------------------------------------------------------------------------------------- buses

    def _bus_doc(self, conn: Any, name: str) -> dict[str, Any] | None:
        doc = conn.execute(select(BUSES.c.doc).where(BUSES.c.name == name)).scalar()
        if doc is None and name == DEFAULT_BUS:
            now = time.time()
            doc = {"Name": name, "Arn": self.bus_arn(name), "CreationTime": now, "LastModifiedTime": now}
            conn.execute(insert(BUSES).values(name=name, doc=doc))
        return None if doc is None else dict(doc)

    def _require_bus(self, conn: Any, name: str) -> dict[str, Any]:
        doc = self._bus_doc(conn, name)
        if doc is None:
            raise EventsNotFound(f"Event bus {name} does not exist.")
        return doc

    async def create_bus(self, r: dict[str, Any]) -> dict[str, Any]:
        name = r.get("Name")
        if not isinstance(name, str) or not _BUS_NAME.fullmatch(name) or "/" in name:
            raise EventsValidation(f"Invalid event bus name {name}.")
        if name == DEFAULT_BUS:
            raise EventsAlreadyExists("Event bus default already exists.")

        def write() -> dict[str, Any]:
            with self.engine.begin() as conn:
                if self._bus_doc(conn, name) is not None:
                    raise EventsAlreadyExists(f"Event bus {name} already exists.")
                now = time.time()
                doc = {"Name": name, "Arn": self.bus_arn(name), "CreationTime": now, "LastModifiedTime": now}
                if isinstance(r.get("Description"), str):
                    doc["Description"] = r["Description"]
                conn.execute(insert(BUSES).values(name=name, doc=doc))
                return {"EventBusArn": doc["Arn"]}

        return await asyncio.to_thread(write)

    async def describe_bus(self, r: dict[str, Any]) -> dict[str, Any]:
        name = self.bus_name(r.get("Name"))

        def read() -> dict[str, Any]:
            with self.engine.begin() as conn:
                return self._require_bus(conn, name)

        return await asyncio.to_thread(read)

    async def delete_bus(self, r: dict[str, Any]) -> dict[str, Any]:
        name = self.bus_name(r.get("Name"))
        if name == DEFAULT_BUS:
            raise EventsValidation("Cannot delete event bus default.")

        def write() -> None:
            with self.engine.begin() as conn:
                if conn.execute(select(RULES.c.name).where(RULES.c.bus == name)).first() is not None:
                    raise EventsValidation(f"Cannot delete event bus {name}: it still has rules.")
                conn.execute(delete(BUSES).where(BUSES.c.name == name))  # deleting a missing bus succeeds

        await asyncio.to_thread(write)
        return {}

    async def list_buses(self, r: dict[str, Any]) -> dict[str, Any]:
        prefix = r.get("NamePrefix")

        def read() -> list[dict[str, Any]]:
            with self.engine.begin() as conn:
                self._bus_doc(conn, DEFAULT_BUS)
                return [dict(d) for d in conn.execute(select(BUSES.c.doc).order_by(BUSES.c.name)).scalars()]

        docs = [d for d in await asyncio.to_thread(read) if not prefix or d["Name"].startswith(prefix)]
        page, nxt = _page(docs, r.get("Limit"), r.get("NextToken"))
        out: dict[str, Any] = {"EventBuses": page}
        if nxt:
            out["NextToken"] = nxt
        return out

    # ---------------------------------------------------------------------------------------- rules

    def _rule(self, conn: Any, bus: str, name: Any) -> dict[str, Any]:
        if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
            raise EventsValidation(f"Invalid rule name {name}.")
        doc = conn.execute(select(RULES.c.doc).where(RULES.c.bus == bus, RULES.c.name == name)).scalar()
        if doc is None:
            raise EventsNotFound(f"Rule {name} does not exist on EventBus {bus}.")
        return dict(doc)

    async def put_rule(self, r: dict[str, Any]) -> dict[str, Any]:
        name = r.get("Name")
        if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
            raise EventsValidation(f"Invalid rule name {name}.")
        bus = self.bus_name(r.get("EventBusName"))
        schedule, pattern = r.get("ScheduleExpression"), r.get("EventPattern")
        if not schedule and not pattern:
            raise EventsValidation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        if schedule:
            if bus != DEFAULT_BUS:
                raise EventsValidation("ScheduleExpression is supported only on the default event bus.")
            try:
                if not isinstance(schedule, str) or len(schedule) > 256:
                    raise InvalidExpression(str(schedule))
                parse(schedule, allow_at=False)
            except InvalidExpression:
                raise EventsValidation("Parameter ScheduleExpression is not valid.") from None
        if pattern:
            try:
                if not isinstance(pattern, str):
                    raise InvalidPattern("EventPattern must be a string")
                compile_pattern(pattern)
            except InvalidPattern as exc:
                raise EventsPatternInvalid(f"Event pattern is not valid. Reason: {exc}") from None
        state = r.get("State") or "ENABLED"
        if state not in ("ENABLED", "DISABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"):
            raise EventsValidation(f"Invalid State {state}.")

        def write() -> tuple[dict[str, Any], Timer | None]:
            with self.engine.begin() as conn:
                self._require_bus(conn, bus)
                old = conn.execute(select(RULES.c.doc).where(RULES.c.bus == bus, RULES.c.name == name)).scalar()
                doc: dict[str, Any] = {"Name": name, "Arn": self.rule_arn(bus, name), "State": state,
                                       "EventBusName": bus, "Targets": (old or {}).get("Targets", [])}
                for field in ("ScheduleExpression", "EventPattern", "Description", "RoleArn"):
                    if r.get(field):
                        doc[field] = r[field]
                if old is None:
                    conn.execute(insert(RULES).values(bus=bus, name=name, doc=doc))
                else:
                    conn.execute(update(RULES).where(RULES.c.bus == bus, RULES.c.name == name).values(doc=doc))
                timer = self._sync_timer(conn, doc)
                return doc, timer

        doc, timer = await asyncio.to_thread(write)
        self._after_rule_change(doc, timer)
        return {"RuleArn": doc["Arn"]}

    def _timer_key(self, doc: dict[str, Any]) -> str:
        return f"rule:{doc['EventBusName']}/{doc['Name']}"

    def _sync_timer(self, conn: Any, doc: dict[str, Any]) -> Timer | None:
        """The rule's timer row, written in the rule's transaction (removed when it has no schedule)."""
        key = self._timer_key(doc)
        if not doc.get("ScheduleExpression"):
            self.timers.remove_row(conn, key)
            return None
        now = int(time.time() * 1000)
        timer_doc = {"Name": doc["Name"], "EventBusName": doc["EventBusName"], "Arn": doc["Arn"],
                     "_timer": {"expression": doc["ScheduleExpression"], "timezone": "UTC", "anchor_ms": now,
                                "end_ms": None, "window_ms": 0, "max_age_ms": 86_400_000,
                                "enabled": doc["State"] != "DISABLED"}}
        timer = TimerLoop.timer_from_row(key, "rule", timer_doc, None)
        if timer.expression.kind == "rate":
            # A rule's first run is one period after it is created, not at once (unlike Scheduler).
            timer.anchor_ms = now + timer.expression.period_s * 1000
            timer_doc["_timer"]["anchor_ms"] = timer.anchor_ms
        self.timers.put(conn, timer, now)
        return timer

    def _after_rule_change(self, doc: dict[str, Any], timer: Timer | None) -> None:
        self._rules = None
        if timer is not None:
            self.timers.activate(timer)
        else:
            self.timers.forget(self._timer_key(doc))

    async def describe_rule(self, r: dict[str, Any]) -> dict[str, Any]:
        bus = self.bus_name(r.get("EventBusName"))

        def read() -> dict[str, Any]:
            with self.engine.connect() as conn:
                return self._rule(conn, bus, r.get("Name"))

        doc = await asyncio.to_thread(read)
        doc.pop("Targets", None)
        doc["CreatedBy"] = self.settings.account_id
        return doc

    async def delete_rule(self, r: dict[str, Any]) -> dict[str, Any]:
        bus = self.bus_name(r.get("EventBusName"))

        def write() -> dict[str, Any] | None:
            with self.engine.begin() as conn:
                try:
                    doc = self._rule(conn, bus, r.get("Name"))
                except EventsNotFound:
                    return None  # deleting a missing rule succeeds, as on AWS
                if doc.get("Targets"):
                    raise EventsValidation("Rule can't be deleted since it has targets.")
                conn.execute(delete(RULES).where(RULES.c.bus == bus, RULES.c.name == doc["Name"]))
                self.timers.remove_row(conn, self._timer_key(doc))
                return doc

        doc = await asyncio.to_thread(write)
        if doc is not None:
            self._rules = None
            self.timers.forget(self._timer_key(doc))
        return {}

    async def set_state(self, r: dict[str, Any], state: str) -> dict[str, Any]:
        bus = self.bus_name(r.get("EventBusName"))

        def write() -> tuple[dict[str, Any], Timer | None]:
            with self.engine.begin() as conn:
                doc = self._rule(conn, bus, r.get("Name"))
                doc["State"] = state
                conn.execute(update(RULES).where(RULES.c.bus == bus, RULES.c.name == doc["Name"]).values(doc=doc))
                return doc, self._sync_timer(conn, doc)

        doc, timer = await asyncio.to_thread(write)
        self._after_rule_change(doc, timer)
        return {}

    async def list_rules(self, r: dict[str, Any]) -> dict[str, Any]:
        bus = self.bus_name(r.get("EventBusName"))
        prefix = r.get("NamePrefix")

        def read() -> list[dict[str, Any]]:
            with self.engine.begin() as conn:
                self._require_bus(conn, bus)
                query = select(RULES.c.doc).where(RULES.c.bus == bus).order_by(RULES.c.name)
                return [dict(d) for d in conn.execute(query).scalars()]

        docs = [{k: v for k, v in d.items() if k != "Targets"} for d in await asyncio.to_thread(read)
                if not prefix or d["Name"].startswith(prefix)]
        page, nxt = _page(docs, r.get("Limit"), r.get("NextToken"))
        out: dict[str, Any] = {"Rules": page}
        if nxt:
            out["NextToken"] = nxt
        return out

    # -------------------------------------------------------------------------------------- targets

    async def put_targets(self, r: dict[str, Any]) -> dict[str, Any]:
        bus = self.bus_name(r.get("EventBusName"))
        targets = r.get("Targets")
        if not isinstance(targets, list) or not 1 <= len(targets) <= 100:
            raise EventsValidation("Targets must hold 1 to 100 targets.")
        failed: list[dict[str, Any]] = []
        good: list[dict[str, Any]] = []
        for t in targets:
            tid = t.get("Id") if isinstance(t, dict) else None
            arn = t.get("Arn") if isinstance(t, dict) else None
            if not isinstance(tid, str) or not _TARGET_ID.fullmatch(tid) or not isinstance(arn, str):
                raise EventsValidation("Each target needs an Id ([.-_A-Za-z0-9]{1,64}) and an Arn.")
            if "Input" in t and "InputPath" in t:
                raise EventsValidation("Only one of Input, InputPath or InputTransformer may be set.")
            if isinstance(t.get("Input"), str) and len(t["Input"]) > 8192:
                raise EventsValidation("Input must be at most 8192 characters.")
            if not supported_target(arn):
                failed.append({"TargetId": tid, "ErrorCode": "ValidationException",
                               "ErrorMessage": f"nimbus delivers to Lambda functions, SQS queues and buses: {arn}"})
                continue
            good.append({k: v for k, v in t.items() if k in (
                "Id", "Arn", "Input", "InputPath", "InputTransformer", "RoleArn", "RetryPolicy", "DeadLetterConfig",
                "SqsParameters")})

        def write() -> None:
            with self.engine.begin() as conn:
                doc = self._rule(conn, bus, r.get("Rule"))
                current = {t["Id"]: t for t in doc.get("Targets", [])}
                current.update({t["Id"]: t for t in good})
                if len(current) > 5:
                    raise EventsError("The requested resource exceeds the maximum number allowed (5 targets).")
                doc["Targets"] = list(current.values())
                conn.execute(update(RULES).where(RULES.c.bus == bus, RULES.c.name == doc["Name"]).values(doc=doc))

        await asyncio.to_thread(write)
        self._rules = None
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    async def remove_targets(self, r: dict[str, Any]) -> dict[str, Any]:
        bus = self.bus_name(r.get("EventBusName"))
        ids = r.get("Ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise EventsValidation("Ids must hold 1 to 100 target ids.")

        def write() -> list[dict[str, Any]]:
            with self.engine.begin() as conn:
                doc = self._rule(conn, bus, r.get("Rule"))
                have = {t["Id"] for t in doc.get("Targets", [])}
                failed = [{"TargetId": i, "ErrorCode": "ResourceNotFoundException",
                           "ErrorMessage": f"Target {i} does not exist."} for i in ids if i not in have]
                doc["Targets"] = [t for t in doc.get("Targets", []) if t["Id"] not in ids]
                conn.execute(update(RULES).where(RULES.c.bus == bus, RULES.c.name == doc["Name"]).values(doc=doc))
                return failed

        failed = await asyncio.to_thread(write)
        self._rules = None
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    async def rules_targeting(self, function_arn: str) -> list[dict[str, Any]]:
        """The rules, on every bus, with a target that is the function `function_arn` (unqualified; a target
        naming one of its versions or aliases counts): what the dashboard shows as its event sources."""

        def read() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [dict(d) for d in conn.execute(select(RULES.c.doc).order_by(RULES.c.name)).scalars()]

        out = []
        for doc in await asyncio.to_thread(read):
            for target in doc.get("Targets", []):
                arn = str(target.get("Arn", ""))
                if arn == function_arn or arn.startswith(function_arn + ":"):
                    out.append({"Name": doc.get("Name"), "EventBusName": doc.get("EventBusName", DEFAULT_BUS),
                                "State": doc.get("State"), "ScheduleExpression": doc.get("ScheduleExpression"),
                                "EventPattern": doc.get("EventPattern"), "Target": arn})
                    break
        return out

    async def list_targets(self, r: dict[str, Any]) -> dict[str, Any]:
        bus = self.bus_name(r.get("EventBusName"))

        def read() -> dict[str, Any]:
            with self.engine.connect() as conn:
                return self._rule(conn, bus, r.get("Rule"))

        doc = await asyncio.to_thread(read)
        page, nxt = _page(doc.get("Targets", []), r.get("Limit"), r.get("NextToken"))
        out: dict[str, Any] = {"Targets": page}
        if nxt:
            out["NextToken"] = nxt
        return out

    # ----------------------------------------------------------------------------------- PutEvents

    def _load_rules(self) -> dict[str, list[tuple[str, Any, dict[str, Any]]]]:
        rules: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {}
        with self.engine.connect() as conn:
            for bus, name, doc in conn.execute(select(RULES.c.bus, RULES.c.name, RULES.c.doc)):
                if doc.get("EventPattern") and doc.get("State", "ENABLED") != "DISABLED":
                    rules.setdefault(bus, []).append((name, compile_pattern(doc["EventPattern"]), dict(doc)))
        return rules

    async def put_events(self, r: dict[str, Any]) -> dict[str, Any]:
        entries = r.get("Entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            raise EventsValidation(f"Entries must hold 1 to {MAX_ENTRIES} entries.")
        if self._rules is None:
            self._rules = await asyncio.to_thread(self._load_rules)
        rules = self._rules
        out: list[dict[str, Any]] = []
        for e in entries:
            try:
                event, bus = self._event(e)
            except EventsError as exc:
                out.append({"ErrorCode": exc.code if exc.code != "ValidationException" else "InvalidArgument",
                            "ErrorMessage": exc.message})
                continue
            for _name, pattern, doc in rules.get(bus, []):
                if pattern.matches(event):
                    await self._deliver_to_targets(doc, event)
            out.append({"EventId": event["id"]})
        failed = sum(1 for o in out if "ErrorCode" in o)
        return {"FailedEntryCount": failed, "Entries": out}

    async def put_to_bus(self, bus_arn: str, entries: list[dict[str, Any]]) -> Any:
        """PutEvents on one bus (the `Targets` hook: buses as targets and destinations)."""
        return await self.put_events({"Entries": [{**e, "EventBusName": bus_arn} for e in entries]})


    def _event(self, e: Any) -> tuple[dict[str, Any], str]:
        if not isinstance(e, dict):
            raise EventsValidation("Each entry must be an object.")
        bus = self.bus_name(e.get("EventBusName"))
        for field in ("Source", "DetailType", "Detail"):
            if not isinstance(e.get(field), str) or not e[field]:
                raise EventsValidation(f"Parameter {field} is not valid. Reason: {field} is a required argument.")
        try:
            detail = json.loads(e["Detail"])
        except ValueError:
            raise EventsValidation("Detail is malformed.") from None
        if not isinstance(detail, dict):
            raise EventsValidation("Detail is malformed.")
        if bus != DEFAULT_BUS and (self._rules is None or bus not in self._rules):
            with self.engine.connect() as conn:
                if conn.execute(select(BUSES.c.name).where(BUSES.c.name == bus)).first() is None:
                    raise EventsNotFound(f"Event bus {bus} does not exist.")
        when = e.get("Time")
        epoch = float(when) if isinstance(when, int | float) else time.time()
        resources = e.get("Resources") or []
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": e["DetailType"], "source": e["Source"],
                 "account": self.settings.account_id, "time": _time(epoch), "region": self.settings.region,
                 "resources": list(resources), "detail": detail}
        return event, bus

    async def _deliver_to_targets(self, rule: dict[str, Any], event: dict[str, Any],
                                  request_ids: dict[str, str] | None = None) -> bool:
        ok = True
        for t in rule.get("Targets", []):
            payload = _transform(t, event)
            group_id = (t.get("SqsParameters") or {}).get("MessageGroupId")
            try:
                await self.targets.deliver(t["Arn"], payload, group_id=group_id,
                                           request_id=(request_ids or {}).get(t["Id"]),
                                           entry={"Source": event["source"], "DetailType": event["detail-type"]})
                self.delivered += 1
            except TargetError as exc:
                self.failed += 1
                ok = False
                dlq = (t.get("DeadLetterConfig") or {}).get("Arn")
                if dlq:
                    from nimbus.events.sqs import MessageAttribute

                    attrs = {"ERROR_CODE": MessageAttribute("String", exc.code),
                             "ERROR_MESSAGE": MessageAttribute("String", exc.message[:1024]),
                             "RULE_ARN": MessageAttribute("String", rule["Arn"]),
                             "TARGET_ARN": MessageAttribute("String", t["Arn"])}
                    with contextlib.suppress(TargetError):
                        await self.targets.send_queue(dlq, payload, attrs)
        return ok

    async def fire_rule(self, timer: Timer, tick_ms: int, attempts: int) -> bool:
        """A tick of a scheduled rule: AWS's Scheduled Event to each target (failed targets are not retried
        beyond what their DeadLetterConfig catches)."""

        def read() -> dict[str, Any] | None:
            with self.engine.connect() as conn:
                doc = conn.execute(select(RULES.c.doc).where(RULES.c.bus == timer.doc["EventBusName"],
                                                             RULES.c.name == timer.doc["Name"])).scalar()
            return None if doc is None else dict(doc)

        rule = await asyncio.to_thread(read)
        if rule is None:
            return True
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": self.settings.account_id, "time": scheduled_time(tick_ms),
                 "region": self.settings.region, "resources": [rule["Arn"]], "detail": {}}
        ids = {t["Id"]: request_id_for(f"{timer.key}#{t['Id']}", tick_ms) for t in rule.get("Targets", [])}
        await self._deliver_to_targets(rule, event, ids if attempts == 0 else None)
        return True


def _path(event: Any, path: str) -> Any:
    """A JSONPath of the simple kind EventBridge targets use (`$.detail.x`, `$`)."""
    if path in ("$", ""):
        return event
    if not path.startswith("$."):
        return None
    value = event
    for part in path[2:].split("."):
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def _transform(target: dict[str, Any], event: dict[str, Any]) -> str:
    if isinstance(target.get("Input"), str):
        return str(target["Input"])
    if isinstance(target.get("InputPath"), str):
        return json.dumps(_path(event, target["InputPath"]))
    transformer = target.get("InputTransformer")
    if isinstance(transformer, dict) and isinstance(transformer.get("InputTemplate"), str):
        text = str(transformer["InputTemplate"])
        for var, path in (transformer.get("InputPathsMap") or {}).items():
            value = _path(event, path)
            # Inside quotes a string value is inserted as is; elsewhere, as JSON.
            text = text.replace(f'"<{var}>"', json.dumps(value if not isinstance(value, str) else value))
            text = text.replace(f"<{var}>", value if isinstance(value, str) else json.dumps(value))
        text = text.replace("<aws.events.event.json>", json.dumps(event))
        return text
    return json.dumps(event, separators=(",", ":"))


def _page(docs: list[Any], limit: Any, token: Any) -> tuple[list[Any], str | None]:
    size = limit if isinstance(limit, int) and limit > 0 else 100
    start = 0
    if token:
        try:
            start = int(token)
        except (TypeError, ValueError):
            raise EventsValidation("Invalid NextToken.") from None
    page = docs[start:start + size]
    return page, str(start + size) if start + size < len(docs) else None

"""Recursive loop detection settings (issue 21): Get/PutFunctionRecursionConfig. AWS's default is
`Terminate`; nimbus keeps the setting and reports it, and does not itself track invocation chains through
queues and topics (docs/compatibility.md)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from nimbus.control import validation as v
from nimbus.control.core import RegistryCore
from nimbus.control.models import FunctionSettingsRow

RECURSIVE_LOOP_VALUES = ("Terminate", "Allow")


class RecursionOps(RegistryCore):
    """GetFunctionRecursionConfig and PutFunctionRecursionConfig."""

    def get_recursion_config(self, function_name: str) -> dict[str, str]:
        name = self._unqualified(function_name)
        with Session(self.engine) as s:
            self._function(s, name)
            settings = s.get(FunctionSettingsRow, name)
            value = settings.recursive_loop if settings is not None else None
        return {"RecursiveLoop": value or "Terminate"}

    def put_recursion_config(self, function_name: str, value: str | None) -> dict[str, str]:
        if value not in RECURSIVE_LOOP_VALUES:
            # AWS's text (LocalStack snapshot test_put_function_recursion_config_invalid_value)
            raise v.constraint(value, "recursiveLoop", "Member must satisfy enum value set: [Terminate, Allow]")
        name = self._unqualified(function_name)
        with self._write(name) as s:
            self._function(s, name)
            settings = s.get(FunctionSettingsRow, name) or FunctionSettingsRow(function_name=name)
            settings.recursive_loop = value
            s.add(settings)
        return {"RecursiveLoop": value}

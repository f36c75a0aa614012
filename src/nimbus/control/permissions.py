"""Function resource policies: AddPermission / RemovePermission / GetPolicy. Statements are kept on the
function row; each names its resource (the function ARN, qualified for a version or alias), so one list
holds the policies of every qualifier."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.orm import Session

from nimbus.control import validation as v
from nimbus.control.core import RegistryCore, new_revision
from nimbus.control.documents import policy_document, statement
from nimbus.errors import InvalidParameterValue, PolicyLengthExceeded, ResourceConflict, ResourceNotFound

POLICY_MAX_BYTES = 20 * 1024
# What AddPermission takes as a principal: everyone, an account, an IAM ARN, or a service principal
_PRINCIPAL = re.compile(r"\*|\d{12}|arn:aws[a-zA-Z-]*:iam::\d{12}:\S+|[a-z0-9][a-z0-9.-]*\.amazon(aws)?\.com(\.cn)?")
POLICY_REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetPolicy API to retrieve the latest Revision Id"
)


class PolicyOps(RegistryCore):
    """AddPermission, RemovePermission and GetPolicy."""

    def _resource(self, function_name: str, qualifier: str | None) -> tuple[str, str | None, str]:
        name, qualifier = self._name_and_qualifier(function_name, qualifier)
        return name, qualifier, self.arn(name, qualifier)

    def add_permission(self, function_name: str, qualifier: str | None, request: dict[str, Any]) -> dict[str, str]:
        """Add a statement; its id must be unique in the (qualifier's) policy."""
        v.check_pattern(request["StatementId"], v.STATEMENT_ID_PATTERN, "statementId", max_len=100, min_len=1)
        v.check_pattern(request["Action"], v.ACTION_PATTERN, "action", max_len=10000)
        v.check_pattern(request["Principal"], r"[^\s]+", "principal", max_len=2048)
        if "SourceAccount" in request:
            v.check_pattern(request["SourceAccount"], r"\d{12}", "sourceAccount", max_len=12)
        if "FunctionUrlAuthType" in request and request["FunctionUrlAuthType"] not in ("NONE", "AWS_IAM"):
            raise v.constraint(request["FunctionUrlAuthType"], "functionUrlAuthType",
                               "Member must satisfy enum value set: [NONE, AWS_IAM]")
        name, qualifier, resource = self._resource(function_name, qualifier)
        # AWS's answers (LocalStack snapshot test_permission_exceptions, recorded against AWS)
        if qualifier == "$LATEST":
            raise InvalidParameterValue("We currently do not support adding policies for $LATEST.")
        if not _PRINCIPAL.fullmatch(request["Principal"]):
            raise InvalidParameterValue("The provided principal was invalid. Please check the principal and try again.")
        with self._write(name) as s:
            fn = self._function(s, name, qualifier)
            if qualifier is not None:
                self._resolve(s, name, qualifier)
            self._check_revision(fn.policy_revision, request.get("RevisionId"), POLICY_REVISION_MISMATCH)
            mine = [st for st in fn.policy if st.get("Resource") == resource]
            if any(st.get("Sid") == request["StatementId"] for st in mine):
                raise ResourceConflict(
                    f"The statement id ({request['StatementId']}) provided already exists. Please provide a new "
                    "statement id, or remove the existing statement."
                )
            new = statement(resource, request)
            size = len(policy_document([*mine, new]))
            if size > POLICY_MAX_BYTES:
                raise PolicyLengthExceeded(
                    f"The final policy size ({size}) is bigger than the limit ({POLICY_MAX_BYTES})."
                )
            fn.policy = [*fn.policy, new]
            fn.policy_revision = new_revision()
        return {"Statement": json.dumps(new, separators=(",", ":"))}


    def remove_permission(self, function_name: str, statement_id: str, qualifier: str | None,
                          revision_id: str | None) -> None:
        name, qualifier, resource = self._resource(function_name, qualifier)
        with self._write(name) as s:
            fn = self._function(s, name, qualifier)
            if qualifier is not None:
                self._resolve(s, name, qualifier)
            self._check_revision(fn.policy_revision, revision_id, POLICY_REVISION_MISMATCH)
            mine = [st for st in fn.policy if st.get("Resource") == resource]
            if not mine:
                raise ResourceNotFound("No policy is associated with the given resource.")
            if not any(st.get("Sid") == statement_id for st in mine):
                raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
            fn.policy = [
                st for st in fn.policy if not (st.get("Resource") == resource and st.get("Sid") == statement_id)
            ]
            fn.policy_revision = new_revision()


    def get_policy(self, function_name: str, qualifier: str | None) -> dict[str, str]:
        name, qualifier, resource = self._resource(function_name, qualifier)
        with Session(self.engine) as s:
            fn = self._function(s, name, qualifier)
            if qualifier is not None:
                self._resolve(s, name, qualifier)
            mine = [st for st in fn.policy if st.get("Resource") == resource]
            if not mine:
                raise ResourceNotFound("The resource you requested does not exist.")
            return {"Policy": policy_document(mine), "RevisionId": fn.policy_revision}

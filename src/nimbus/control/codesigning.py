"""Code signing configs (issue 21): Create/Get/Update/Delete/List, the functions that use one, and
Put/Get/DeleteFunctionCodeSigningConfig, with AWS's documents and errors (LocalStack snapshots
test_function_code_signing_config and test_code_signing_not_found_excs, recorded against AWS).

nimbus stores and reports the configs; it has no AWS Signer, so it does not verify signatures on deployed
code (docs/compatibility.md)."""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nimbus.control import validation as v
from nimbus.control.core import RegistryCore, page_of
from nimbus.control.documents import lambda_timestamp
from nimbus.control.models import CodeSigningConfigRow, FunctionSettingsRow
from nimbus.errors import CodeSigningConfigNotFound, ResourceConflict, ResourceNotFound

CSC_ARN_PATTERN = (
    r"arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
    r"code-signing-config:csc-[a-z0-9]{17}"
)
SIGNING_PROFILE_PATTERN = (
    r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)"
)
POLICIES = ("Warn", "Enforce")


def new_csc_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "csc-" + "".join(secrets.choice(alphabet) for _ in range(17))


class CodeSigningMissing(ResourceNotFound):
    """AWS answers a missing code signing config with a bare `{"Message": ...}` (no Type)."""

    def body(self) -> dict[str, Any]:
        return {"Message": self.message}


class CodeSigningOps(RegistryCore):
    """The code signing config operations of the Lambda API."""

    def csc_arn(self, csc_id: str) -> str:
        return f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:code-signing-config:{csc_id}"

    def _csc_doc(self, row: CodeSigningConfigRow) -> dict[str, Any]:
        return {
            "AllowedPublishers": {"SigningProfileVersionArns": list(row.allowed_publishers)},
            "CodeSigningConfigArn": self.csc_arn(row.id),
            "CodeSigningConfigId": row.id,
            "CodeSigningPolicies": {"UntrustedArtifactOnDeployment": row.untrusted_artifact_on_deployment},
            "Description": row.description,
            "LastModified": row.last_modified,
        }

    def csc_id_of(self, arn: str) -> str:
        """The id in a code signing config ARN, after checking the ARN's form (ValidationException)."""
        v.check_pattern(arn, CSC_ARN_PATTERN, "codeSigningConfigArn", max_len=200)
        return arn.rsplit(":", 1)[1]

    def _csc(self, s: Session, arn: str) -> CodeSigningConfigRow:
        row = s.get(CodeSigningConfigRow, self.csc_id_of(arn))
        if row is None or arn != self.csc_arn(row.id):
            raise CodeSigningMissing(f"The Lambda code signing configuration {arn} can not be found.")
        return row

    @staticmethod
    def _publishers(value: Any) -> list[str]:
        arns = (value or {}).get("SigningProfileVersionArns") if isinstance(value, dict) else None
        if not isinstance(arns, list) or not 1 <= len(arns) <= 20:
            raise v.constraint(arns, "allowedPublishers.signingProfileVersionArns",
                               "Member must have length less than or equal to 20, Member must have length "
                               "greater than or equal to 1")
        for arn in arns:
            if not isinstance(arn, str) or not re.fullmatch(SIGNING_PROFILE_PATTERN, arn):
                raise v.constraint(arns, "allowedPublishers.signingProfileVersionArns",
                                   f"Member must satisfy regular expression pattern: {SIGNING_PROFILE_PATTERN}")
        return list(arns)

    @staticmethod
    def _policy(value: Any) -> str:
        policy = (value or {}).get("UntrustedArtifactOnDeployment", "Warn") if isinstance(value, dict) else "Warn"
        if policy not in POLICIES:
            raise v.constraint(policy, "codeSigningPolicies.untrustedArtifactOnDeployment",
                               "Member must satisfy enum value set: [Warn, Enforce]")
        return str(policy)

    def create_code_signing_config(self, request: dict[str, Any]) -> dict[str, Any]:
        publishers = self._publishers(request.get("AllowedPublishers"))
        policy = self._policy(request.get("CodeSigningPolicies"))
        description = request.get("Description") or ""
        v.check_description(description)
        tags = dict(request.get("Tags") or {})
        v.check_tags(tags)
        row = CodeSigningConfigRow(id=new_csc_id(), description=description, allowed_publishers=publishers,
                                   untrusted_artifact_on_deployment=policy, last_modified=lambda_timestamp(),
                                   tags=tags)
        with self._write_lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            s.add(row)
        return {"CodeSigningConfig": self._csc_doc(row)}

    def get_code_signing_config(self, arn: str) -> dict[str, Any]:
        with Session(self.engine) as s:
            return {"CodeSigningConfig": self._csc_doc(self._csc(s, arn))}

    def update_code_signing_config(self, arn: str, request: dict[str, Any]) -> dict[str, Any]:
        with self._write_lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            row = self._csc(s, arn)
            changed = False
            if "AllowedPublishers" in request:
                row.allowed_publishers = self._publishers(request["AllowedPublishers"])
                changed = True
            if "CodeSigningPolicies" in request:
                row.untrusted_artifact_on_deployment = self._policy(request["CodeSigningPolicies"])
                changed = True
            if "Description" in request:
                v.check_description(request["Description"])
                row.description = request["Description"]
                changed = True
            if changed:
                row.last_modified = lambda_timestamp()
        return {"CodeSigningConfig": self._csc_doc(row)}

    def delete_code_signing_config(self, arn: str) -> None:
        with self._write_lock, Session(self.engine) as s, s.begin():
            row = self._csc(s, arn)
            users = self._csc_users(s, row.id)
            if users:
                raise ResourceConflict(
                    f"The code signing configuration {arn} cannot be deleted because it is used by the following "
                    f"functions: [{', '.join(self.arn(n) for n in users)}]"
                )
            s.delete(row)

    def list_code_signing_configs(self, marker: str | None, max_items: int | None) -> dict[str, Any]:
        with Session(self.engine) as s:
            rows = sorted(s.scalars(select(CodeSigningConfigRow)).all(), key=lambda r: r.id)
        page, nxt = page_of(rows, marker, min(max_items or 50, 50), lambda r: r.id)
        out: dict[str, Any] = {"CodeSigningConfigs": [self._csc_doc(r) for r in page]}
        if nxt:
            out["NextMarker"] = nxt
        return out

    @staticmethod
    def _csc_users(s: Session, csc_id: str) -> list[str]:
        query = select(FunctionSettingsRow.function_name).where(FunctionSettingsRow.code_signing_config_id == csc_id)
        return sorted(s.scalars(query).all())

    def list_functions_by_code_signing_config(self, arn: str) -> dict[str, Any]:
        with Session(self.engine) as s:
            row = self._csc(s, arn)
            return {"FunctionArns": [self.arn(n) for n in self._csc_users(s, row.id)]}

    # ---------------------------------------------------------------- a function's config

    def existing_csc_id(self, s: Session, arn: str) -> str:
        """The id of an existing config named by `arn` (CodeSigningConfigNotFoundException otherwise)."""
        csc_id = self.csc_id_of(arn)
        if s.get(CodeSigningConfigRow, csc_id) is None or arn != self.csc_arn(csc_id):
            raise CodeSigningConfigNotFound(
                "The code signing configuration cannot be found. Check that the provided configuration is "
                f"not deleted: {arn}."
            )
        return csc_id

    def put_function_code_signing_config(self, function_name: str, arn: str) -> dict[str, str]:
        name = self._unqualified(function_name)
        with Session(self.engine) as s:  # the config is looked up before the function, as AWS does
            csc_id = self.existing_csc_id(s, arn)
        with self._write(name) as s:
            self._function(s, name)
            settings = s.get(FunctionSettingsRow, name) or FunctionSettingsRow(function_name=name)
            settings.code_signing_config_id = csc_id
            s.add(settings)
        return {"CodeSigningConfigArn": arn, "FunctionName": name}

    def get_function_code_signing_config(self, function_name: str) -> dict[str, str]:
        name = self._unqualified(function_name)
        with Session(self.engine) as s:
            self._function(s, name)
            settings = s.get(FunctionSettingsRow, name)
            if settings is None or settings.code_signing_config_id is None:
                return {}  # AWS answers an empty document for a function without one
            return {"CodeSigningConfigArn": self.csc_arn(settings.code_signing_config_id), "FunctionName": name}

    def delete_function_code_signing_config(self, function_name: str) -> None:
        name = self._unqualified(function_name)
        with self._write(name) as s:
            self._function(s, name)
            settings = s.get(FunctionSettingsRow, name)
            if settings is not None:
                settings.code_signing_config_id = None

    # ---------------------------------------------------------------- tags (TagResource on a config)

    def _csc_for_tags(self, s: Session, arn: str) -> CodeSigningConfigRow:
        return self._csc(s, arn)

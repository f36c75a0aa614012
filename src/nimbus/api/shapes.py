"""Pydantic models of the Lambda control-plane request bodies: JSON types and required fields only (the
rules and limits are the registry's). Unknown fields are ignored, as AWS does; a known field of the
wrong type is refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    def fields(self) -> dict[str, Any]:
        """The fields the client sent, with nulls dropped (AWS treats null as absent)."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


class FunctionCodeShape(Shape):
    ZipFile: str | None = None
    S3Bucket: str | None = None
    S3Key: str | None = None
    S3ObjectVersion: str | None = None
    ImageUri: str | None = None


class EnvironmentShape(Shape):
    Variables: dict[str, str] | None = None


class TracingConfigShape(Shape):
    Mode: str | None = None


class EphemeralStorageShape(Shape):
    Size: int | None = None


class SnapStartShape(Shape):
    ApplyOn: str | None = None


class LoggingConfigShape(Shape):
    LogFormat: str | None = None
    ApplicationLogLevel: str | None = None
    SystemLogLevel: str | None = None
    LogGroup: str | None = None


class DurableConfigShape(Shape):
    ExecutionTimeout: int | None = None
    RetentionPeriodInDays: int | None = None
    KMSKeyArn: str | None = None


class ImageConfigShape(Shape):
    EntryPoint: list[str] | None = None
    Command: list[str] | None = None
    WorkingDirectory: str | None = None


class _ConfigFields(Shape):
    ImageConfig: ImageConfigShape | None = None
    Role: str | None = None
    Handler: str | None = None
    Description: str | None = None
    Timeout: int | None = None
    MemorySize: int | None = None
    Runtime: str | None = None
    Environment: EnvironmentShape | None = None
    TracingConfig: TracingConfigShape | None = None
    Layers: list[str] | None = None
    EphemeralStorage: EphemeralStorageShape | None = None
    SnapStart: SnapStartShape | None = None
    LoggingConfig: LoggingConfigShape | None = None
    DurableConfig: DurableConfigShape | None = None  # durable functions (issue 18)
    # Accepted for compatibility; this server has no VPCs, DLQs or KMS.
    VpcConfig: dict[str, Any] | None = None
    DeadLetterConfig: dict[str, Any] | None = None
    KMSKeyArn: str | None = None


class CreateFunction(_ConfigFields):
    FunctionName: str
    Role: str
    Code: FunctionCodeShape
    Publish: bool | None = None
    PackageType: str | None = None
    Tags: dict[str, str] | None = None
    Architectures: list[str] | None = None
    CodeSigningConfigArn: str | None = None


class UpdateFunctionConfiguration(_ConfigFields):
    RevisionId: str | None = None


class UpdateFunctionCode(Shape):
    ZipFile: str | None = None
    S3Bucket: str | None = None
    S3Key: str | None = None
    ImageUri: str | None = None
    Architectures: list[str] | None = None
    Publish: bool | None = None
    DryRun: bool | None = None
    RevisionId: str | None = None


class PublishVersion(Shape):
    CodeSha256: str | None = None
    Description: str | None = None
    RevisionId: str | None = None


class RoutingConfigShape(Shape):
    AdditionalVersionWeights: dict[str, float] | None = None


class CreateAlias(Shape):
    Name: str
    FunctionVersion: str
    Description: str | None = None
    RoutingConfig: RoutingConfigShape | None = None


class UpdateAlias(Shape):
    FunctionVersion: str | None = None
    Description: str | None = None
    RoutingConfig: RoutingConfigShape | None = None
    RevisionId: str | None = None


class TagResource(Shape):
    Tags: dict[str, str]


class PutFunctionConcurrency(Shape):
    ReservedConcurrentExecutions: int


class AddPermission(Shape):
    StatementId: str
    Action: str
    Principal: str
    SourceArn: str | None = None
    SourceAccount: str | None = None
    EventSourceToken: str | None = None
    PrincipalOrgID: str | None = None
    FunctionUrlAuthType: str | None = None
    InvokedViaFunctionUrl: bool | None = None
    RevisionId: str | None = None

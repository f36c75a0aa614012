"""serverless.yml parsing: variables, stages, params, events, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.project import sam, serverless
from nimbus.project.errors import ProjectError
from nimbus.project.model import HttpRoute, QueueSource, Schedule

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(tmp_path: Path, text: str, name: str = "serverless.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def parse(path: Path, **options: str) -> serverless.ServiceSpec:  # type: ignore[name-defined]
    return serverless.parse(path, options, {"PYTHON_RUNTIME": "python3.11"})


def test_example_http_api_resolves_every_variable() -> None:
    spec = parse(EXAMPLES / "http-api" / "serverless.yml")
    assert (spec.service, spec.stage, spec.region) == ("http-api", "dev", "us-east-1")
    hello, items = spec.functions
    assert hello.name == "http-api-dev-hello" and hello.runtime == "python3.11"
    assert hello.environment == {"GREETING": "Hello", "STAGE": "dev", "OWNER": "platform-team"}
    assert items.memory == 512 and hello.memory == 256 and hello.timeout == 10
    assert hello.routes == [HttpRoute("GET", "/hello/{name}", "2.0")]
    assert items.routes == [HttpRoute("POST", "/items"), HttpRoute("$default", "$default")]
    assert hello.url == {"AuthType": "NONE"}
    prod = parse(EXAMPLES / "http-api" / "serverless.yml", stage="prod")
    assert prod.functions[0].name == "http-api-prod-hello"
    assert prod.functions[0].environment["GREETING"] == "Welcome"  # params.prod wins over params.default


def test_fallbacks_nesting_env_and_opt(tmp_path: Path) -> None:
    path = write(tmp_path, """
service: shop
custom:
  memory:
    dev: 256
    prod: 2048
provider:
  name: aws
  runtime: python3.12
  stage: ${opt:stage, 'qa'}
  region: ${opt:region, env:REGION, 'eu-west-1'}
functions:
  api:
    handler: app.handler
    memorySize: ${self:custom.memory.${sls:stage}, 128}
    timeout: ${env:MISSING, 30}
    environment:
      TABLE: ${self:service}-${sls:stage}-table
      FLAG: ${strToBool(true)}
""")
    spec = serverless.parse(path, {"stage": "prod"}, {"REGION": "ap-south-1"})
    fn = spec.functions[0]
    assert (spec.stage, spec.region, fn.memory, fn.timeout) == ("prod", "ap-south-1", 2048, 30)
    assert fn.environment == {"TABLE": "shop-prod-table", "FLAG": "true"}
    qa = serverless.parse(path, {}, {})
    assert (qa.stage, qa.region, qa.functions[0].memory) == ("qa", "eu-west-1", 128)


def test_events_schedule_sqs_and_unsupported_warn(tmp_path: Path) -> None:
    path = write(tmp_path, """
service: jobs
provider: {name: aws, runtime: python3.12}
functions:
  tick:
    handler: h.tick
    events:
      - schedule: rate(5 minutes)
      - schedule: {rate: ["cron(0 12 * * ? *)"], enabled: false, input: {a: 1}}
      - s3: my-bucket
  work:
    handler: h.work
    events:
      - sqs: {arn: "arn:aws:sqs:us-east-1:000000000000:q", batchSize: 3}
""")
    spec = parse(path)
    tick, work = spec.functions
    assert tick.schedules == [Schedule("rate(5 minutes)"), Schedule("cron(0 12 * * ? *)", False, '{"a": 1}')]
    assert work.queues == [QueueSource("arn:aws:sqs:us-east-1:000000000000:q", 3)]
    assert any("serverless.yml:10: functions.tick.events[2].s3" in w and "not supported" in w
               for w in spec.warnings)


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("service: a\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: h.f\n"
     "    timeout: soon\n", 6, "functions.f.timeout", "expected an integer, got 'soon'"),
    ("service: a\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    memorySize: 128\n",
     4, "functions.f.handler", "missing"),
    ("service: a\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: h.f\n"
     "    environment:\n      X: ${ssm:/path}\n", 7, "functions.f.environment.X", "not supported"),
    ("service: a\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: h.f\n"
     "    environment:\n      X: ${self:custom.nope}\n", 7, "functions.f.environment.X", "cannot resolve"),
    ("service: a\nprovider: {name: aws}\nfunctions:\n  f:\n    handler: h.f\n", 4, "functions.f.runtime",
     "no runtime"),
    ("service: a\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: h.f\n"
     "    timeout: 5000\n", 6, "functions.f.timeout", "between 1 and 900"),
    ("service: a\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: h.f\n"
     "    events:\n      - schedule: every day\n", 7, "functions.f.events[0].schedule", "rate(...)"),
    ("service: a\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: h.f\n"
     "    handler: h.g\n", 6, "functions.f.handler", "duplicate key"),
    ("service: a\nprovider: {name: aws, runtime: python3.12}\nfunctions:\n  f:\n    handler: h.f\n"
     "     timeout: 3\n", 6, "", "invalid YAML"),
    ("service: a\ncustom:\n  x: ${self:custom.y}\n  y: ${self:custom.x}\nprovider: {name: aws, runtime: "
     "python3.12}\nfunctions:\n  f:\n    handler: h.f\n    description: ${self:custom.x}\n", 3, "custom.x",
     "refers to itself"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProjectError) as caught:
        parse(path)
    exc = caught.value
    assert (exc.file, exc.line) == (path, line), str(exc)
    assert exc.key == key and words in exc.message, str(exc)
    assert str(exc).startswith(f"{path}:{line}: ")


def test_file_variable_missing_file_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "service: a\nprovider: {name: aws, runtime: python3.12}\ncustom: ${file(./nope.yml)}\n"
                           "functions:\n  f:\n    handler: h.f\n    description: ${self:custom.d}\n")
    with pytest.raises(ProjectError, match=r"serverless.yml:3: custom: \$\{file\(./nope.yml\)\}: no such file"):
        parse(path)


def test_sam_template_matches_the_serverless_example() -> None:
    path = EXAMPLES / "sam-hello" / "template.yaml"
    assert sam.is_sam(path)
    spec = sam.parse(path, {"stage": "test"}, {}, {"Runtime": "python3.11"})
    (fn,) = spec.functions
    assert (spec.service, fn.name, fn.runtime, fn.memory, fn.timeout) == (
        "sam-hello", "sam-hello-test-HelloFunction", "python3.11", 256, 10)
    assert fn.environment == {"GREETING": "Hello", "WHERE": "us-east-1/sam-hello-test"}
    assert fn.routes == [HttpRoute("GET", "/hello", "2.0")] and fn.url == {"AuthType": "NONE"}
    assert fn.source_dir.name == "src"


def test_sam_errors_name_line(tmp_path: Path) -> None:
    path = write(tmp_path, "Transform: AWS::Serverless-2016-10-31\nResources:\n  F:\n"
                           "    Type: AWS::Serverless::Function\n"
                           "    Properties:\n      CodeUri: .\n      Handler: a.b\n      Runtime: python3.12\n"
                           "      Timeout: !GetAtt X.Y\n", "template.yaml")
    with pytest.raises(ProjectError) as caught:
        sam.parse(path, {}, {})
    assert caught.value.line == 9 and caught.value.key == "Resources.F.Properties.Timeout"


def test_own_layers_are_referenced_by_ref(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    path = write(tmp_path, "service: s\nprovider: {name: aws, runtime: python3.12}\nlayers:\n  deps:\n"
                           "    path: shared\nfunctions:\n  f:\n    handler: h.f\n    layers:\n"
                           "      - {Ref: DepsLambdaLayer}\n      - arn:aws:lambda:us-east-1:1:layer:x:1\n"
                           "  g:\n    handler: h.g\n    layers:\n      - {Ref: NopeLambdaLayer}\n")
    with pytest.raises(ProjectError) as caught:
        parse(path)
    assert caught.value.line == 15 and "DepsLambdaLayer" in caught.value.message
    path.write_text(path.read_text().replace("Nope", "Deps"))
    spec = parse(path)
    assert spec.functions[0].layers == ["layer:deps", "arn:aws:lambda:us-east-1:1:layer:x:1"]
    assert spec.layers[0].name == "s-dev-deps" and spec.layers[0].path == tmp_path / "shared"

"""HTTP APIs in the control plane: persistence, validation, and AWS's route selection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.control.httpapis import HttpApis, function_of
from nimbus.errors import ApiBadRequest, ApiConflict, ApiNotFound


@pytest.fixture
def apis(tmp_path: Path) -> Iterator[HttpApis]:
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    yield HttpApis(engine, settings)
    engine.dispose()


def _api(apis: HttpApis, *keys: str) -> str:
    api_id = apis.create_api({"name": "t"})["apiId"]
    for i, key in enumerate(keys):
        integration = apis.create(api_id, "integrations", {"integrationType": "AWS_PROXY",
                                                            "integrationUri": f"fn{i}"})
        apis.create(api_id, "routes", {"routeKey": key, "target": f"integrations/{integration['integrationId']}"})
    apis.create(api_id, "stages", {"stageName": "$default"})
    return api_id


def test_most_specific_route_wins(apis: HttpApis) -> None:
    api_id = _api(apis, "GET /pets/{id}", "GET /pets/dog", "ANY /pets/{id}", "GET /{proxy+}", "$default",
                  "GET /pets/{id}/toys/{toy}")
    api = apis.api(api_id)
    assert api is not None

    def route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
        found = apis.match(api, method, path)  # type: ignore[arg-type]
        return (found.route_key, found.path_parameters) if found else None

    assert route("GET", "/pets/dog") == ("GET /pets/dog", {})
    assert route("GET", "/pets/7") == ("GET /pets/{id}", {"id": "7"})
    assert route("DELETE", "/pets/7") == ("ANY /pets/{id}", {"id": "7"})
    assert route("GET", "/pets/7/toys/ball") == ("GET /pets/{id}/toys/{toy}", {"id": "7", "toy": "ball"})
    assert route("GET", "/a/b/c") == ("GET /{proxy+}", {"proxy": "a/b/c"})
    assert route("POST", "/a/b/c") == ("$default", {})


def test_no_default_means_no_match(apis: HttpApis) -> None:
    api = apis.api(_api(apis, "GET /only"))
    assert api is not None and apis.match(api, "GET", "/other") is None
    found = apis.match(api, "GET", "/only")
    assert found is not None and found.function_name == "fn0" and found.payload_version == "2.0"


def test_persistence_validation_and_cache(apis: HttpApis, tmp_path: Path) -> None:
    api_id = _api(apis, "GET /a")
    assert apis.api(api_id) is not None
    with pytest.raises(ApiConflict):
        apis.create(api_id, "routes", {"routeKey": "GET /a"})
    for bad in ("GET a", "FETCH /a", "GET /{a+}/b", "GET /{a"):
        with pytest.raises(ApiBadRequest):
            apis.create(api_id, "routes", {"routeKey": bad})
    with pytest.raises(ApiBadRequest):
        apis.create(api_id, "routes", {"routeKey": "GET /b", "target": "integrations/nope"})
    with pytest.raises(ApiBadRequest):
        apis.create(api_id, "integrations", {"integrationType": "HTTP_PROXY", "integrationUri": "http://x"})
    integration = apis.get(api_id, "integrations")[0]
    with pytest.raises(ApiConflict):  # still the target of GET /a
        apis.delete(api_id, "integrations", integration["integrationId"])
    route = apis.get(api_id, "routes")[0]
    apis.update(api_id, "routes", route["routeId"], {"routeKey": "GET /c"})
    compiled = apis.api(api_id)
    assert compiled is not None and apis.match(compiled, "GET", "/c") is not None  # the cache was dropped
    other = HttpApis(apis.engine, apis.settings)  # another process reading the same database
    assert [r["routeKey"] for r in other.get(api_id, "routes")] == ["GET /c"]
    apis.delete_api(api_id)
    with pytest.raises(ApiNotFound):
        apis.get_api(api_id)
    assert apis.api(api_id) is None


def test_function_of_integration_uris() -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:shop-dev-api"
    assert function_of(arn) == ("shop-dev-api", None)
    assert function_of(arn + ":live") == ("shop-dev-api", "live")
    wrapped = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}:live/invocations"
    assert function_of(wrapped) == ("shop-dev-api", "live")
    assert function_of("plain") == ("plain", None)

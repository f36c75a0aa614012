"""The dashboard in a real headless browser: Debian's /usr/bin/chromium driven by Playwright (never a browser
Playwright downloads). Logs in with the server's admin key, watches charts and counters update live while
functions are invoked, opens a function's page (configuration, versions, aliases, deployments, invocations,
logs in follow mode) and saves a screenshot (to $NIMBUS_DASHBOARD_SCREENSHOT when set, e.g. docs/dashboard.png).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

APP = """
import time

def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("payment declined")
    time.sleep(event.get("sleep", 0))
    print("processed", event.get("marker", "order"))
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium; CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    server = NimbusServer(tmp_path_factory.mktemp("dashboard") / "data",
                          env={"NIMBUS_METERING_FLUSH_INTERVAL": "0.5"}).start()
    yield server
    server.stop()


def deploy(lam: Any, name: str, **config: Any) -> None:
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": APP})}, **config)


class Traffic:
    """Invokes functions in a background thread until stopped (the charts need live data)."""

    def __init__(self, srv: NimbusServer, names: list[str]) -> None:
        self.srv, self.names = srv, names
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with self.srv.http() as http:
            i = 0
            while not self.stop.is_set():
                name = self.names[i % len(self.names)]
                body = b'{"fail": true}' if i % 7 == 3 else f'{{"sleep": {0.005 * (i % 5)}}}'.encode()
                http.post(f"/2015-03-31/functions/{name}/invocations", content=body)
                i += 1
                self.stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_dashboard_live_in_a_real_browser(srv: NimbusServer, playwright_browser: Any, tmp_path: Path) -> None:
    lam = srv.client("lambda")
    suffix = uuid.uuid4().hex[:6]
    orders, thumbs = f"orders-{suffix}", f"thumbnails-{suffix}"
    deploy(lam, orders, MemorySize=256, Description="Order intake")
    deploy(lam, thumbs, MemorySize=1024, Architectures=["arm64"], TracingConfig={"Mode": "Active"})
    lam.publish_version(FunctionName=orders)
    lam.create_alias(FunctionName=orders, Name="live", FunctionVersion="1")
    lam.update_function_code(FunctionName=orders, ZipFile=make_zip({"app.py": APP + "\n# v2\n"}))
    lam.get_waiter("function_updated_v2").wait(FunctionName=orders)
    lam.publish_version(FunctionName=orders)
    lam.put_function_concurrency(FunctionName=orders, ReservedConcurrentExecutions=20)
    # Event sources of `orders` (issue 15): a queue mapping and a schedule on its alias.
    sqs = srv.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"orders-in-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=orders, BatchSize=5)
    orders_arn = lam.get_function_configuration(FunctionName=orders)["FunctionArn"]
    srv.client("scheduler").create_schedule(
        Name=f"nightly-{suffix}", ScheduleExpression="cron(0 3 * * ? *)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": f"{orders_arn}:live", "RoleArn": "arn:aws:iam::000000000000:role/scheduler"})
    legacy = f"legacy-{suffix}"  # switched off with reserved concurrency 0: every call is throttled
    deploy(lam, legacy, MemorySize=512)
    lam.put_function_concurrency(FunctionName=legacy, ReservedConcurrentExecutions=0)

    page = playwright_browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{srv.endpoint}/dashboard/")
    page.wait_for_selector("#login-form", state="visible")
    akid, secret = srv.credentials
    page.fill("#key-id", akid)
    page.fill("#key-secret", secret + "wrong")
    page.click("#login-button")
    page.wait_for_selector("#login-error", state="visible")
    page.fill("#key-secret", secret)
    page.click("#login-button")
    page.wait_for_selector(f"a.fn-link:has-text('{orders}')", timeout=30_000)
    assert page.is_visible(f"a.fn-link:has-text('{thumbs}')")

    with Traffic(srv, [orders, thumbs, orders, thumbs, legacy]):
        # Counters and charts update without a reload: wait for the invocation total to pass 20, then for
        # the chart to have at least two points of live data.
        page.wait_for_function("Number(document.querySelector('#total-invocations').textContent) >= 20",
                               timeout=60_000)
        page.wait_for_function(
            "[...document.querySelectorAll('#overview-charts svg')].every(s => Number(s.dataset.points) >= 2)",
            timeout=60_000)
        assert page.locator("#overview-charts path.series").count() >= 4
        first = int(page.inner_text("#total-invocations"))
        page.wait_for_function(f"Number(document.querySelector('#total-invocations').textContent) > {first}",
                               timeout=60_000)
        assert page.inner_text("#cost-total").startswith("$")

        # The function's page: configuration, versions, aliases, deployments, invocations, logs.
        page.click(f"a.fn-link:has-text('{orders}')")
        page.wait_for_selector("#fn-name")
        assert page.inner_text("#fn-name") == orders
        page.wait_for_selector("#fn-config >> text=256 MB")
        page.wait_for_selector("#fn-aliases >> text=live")
        assert page.locator("#fn-versions tr").count() >= 3  # header, $LATEST, 1, 2
        assert page.locator("#fn-deployments tr.deployment").count() == 4  # create, publish, update, publish
        assert akid in page.inner_text("#fn-deployments")
        page.wait_for_selector("#fn-concurrency >> text=20 reserved")
        page.wait_for_selector("#fn-sources tr.event-source")
        sources = page.inner_text("#fn-sources")
        assert page.locator("#fn-sources tr.event-source").count() == 2
        assert queue_arn in sources and f"nightly-{suffix}" in sources and "cron(0 3 * * ? *)" in sources
        page.wait_for_selector("#fn-invocations tr.invocation", timeout=30_000)
        page.wait_for_selector("#fn-invocations >> text=error", timeout=30_000)
        page.wait_for_selector("#fn-logs >> text=REPORT RequestId", timeout=30_000)
        page.wait_for_function("Number(document.querySelector('#fn-charts svg').dataset.points) >= 2",
                               timeout=60_000)
        # Follow mode: a new invocation's output appears without a reload.
        marker = f"marker-{uuid.uuid4().hex[:8]}"
        with srv.http() as http:
            http.post(f"/2015-03-31/functions/{orders}/invocations", json={"marker": marker})
        page.wait_for_selector(f"#fn-logs >> text={marker}", timeout=30_000)
        # A request id opens that invocation's own lines.
        page.click("#fn-invocations a.inv-link >> nth=0")
        page.wait_for_selector("#fn-invocation-logs >> text=REPORT RequestId", timeout=30_000)
        rid = page.text_content("#fn-invocation-id") or ""
        assert f"START RequestId: {rid}" in page.inner_text("#fn-invocation-logs")
        page.wait_for_selector("#fn-cost-total >> text=requests")

        page.click("text=← Functions")
        page.wait_for_selector("#overview-charts svg")
        assert int(page.inner_text("#total-throttles")) > 0
        wanted = os.environ.get("NIMBUS_DASHBOARD_SCREENSHOT")
        page.wait_for_timeout(30_000 if wanted else 2500)  # a longer history for the documentation's picture
        shot = Path(wanted or tmp_path / "dashboard.png")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.click(f"a.fn-link:has-text('{orders}')")
        page.wait_for_selector("#fn-logs >> text=REPORT RequestId")
        detail = shot.with_name(shot.stem + "-function.png")
        page.screenshot(path=str(detail), full_page=True)

    page.click("#logout")
    page.wait_for_selector("#login-form", state="visible")
    page.close()

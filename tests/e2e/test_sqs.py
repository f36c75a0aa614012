"""The SQS-compatible queue service end to end: a real `nimbus server`, driven by unmodified boto3 (JSON
protocol), a hand-signed query-protocol request (what older SDKs send) and the AWS CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import NimbusServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sqs(server: NimbusServer):  # type: ignore[no-untyped-def]
    return server.client("sqs")


def _md5_attributes(attrs: dict[str, Any]) -> str:
    """SQS's documented attribute digest, written independently of the server's code."""
    buf = b""
    for name in sorted(attrs):
        value = attrs[name]
        buf += struct.pack(">I", len(name.encode())) + name.encode()
        buf += struct.pack(">I", len(value["DataType"].encode())) + value["DataType"].encode()
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            buf += b"\x02" + struct.pack(">I", len(raw)) + raw
        else:
            raw = value["StringValue"].encode()
            buf += b"\x01" + struct.pack(">I", len(raw)) + raw
    return hashlib.md5(buf).hexdigest()


def test_queue_lifecycle_and_message_round_trip(sqs, server: NimbusServer) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="e2e-basic", tags={"team": "a"})["QueueUrl"]
    assert url == f"{server.endpoint}/000000000000/e2e-basic"
    assert sqs.get_queue_url(QueueName="e2e-basic")["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix="e2e-b")["QueueUrls"]
    attrs = {"Author": {"DataType": "String", "StringValue": "John Grisham"},
             "Count": {"DataType": "Number.int", "StringValue": "6"},
             "Blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffdata"}}
    body = "héllo\r\nwörld"
    sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attrs)
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == _md5_attributes(attrs)
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"])
    (msg,) = got["Messages"]
    assert msg["Body"] == body and msg["MessageId"] == sent["MessageId"]
    assert msg["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert msg["MessageAttributes"] == attrs
    assert msg["MD5OfMessageAttributes"] == _md5_attributes(attrs)
    assert msg["Attributes"]["ApproximateReceiveCount"] == "1"
    assert abs(int(msg["Attributes"]["SentTimestamp"]) - time.time() * 1000) < 60_000
    # only the attributes asked for, and the digest of those
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["Author", "Nope.*"])["Messages"][0]
    assert list(again["MessageAttributes"]) == ["Author"]
    assert again["MD5OfMessageAttributes"] == _md5_attributes({"Author": attrs["Author"]})
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:e2e-basic"
    assert a["VisibilityTimeout"] == "30" and a["MaximumMessageSize"] == "1048576"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "45"})
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "45"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "dev"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "dev"}
    sqs.purge_queue(QueueUrl=url)
    with pytest.raises(ClientError) as purge:
        sqs.purge_queue(QueueUrl=url)
    assert purge.value.response["Error"]["Code"] == "AWS.SimpleQueueService.PurgeQueueInProgress"
    assert purge.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as gone:
        sqs.get_queue_url(QueueName="e2e-basic")
    assert gone.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


def test_errors_carry_sqs_codes(sqs) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="e2e-errors", Attributes={"DelaySeconds": "0"})["QueueUrl"]
    with pytest.raises(sqs.exceptions.QueueNameExists) as exists:
        sqs.create_queue(QueueName="e2e-errors", Attributes={"DelaySeconds": "5"})
    assert exists.value.response["Error"]["Code"] == "QueueAlreadyExists"
    with pytest.raises(ClientError) as too_many:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert too_many.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as big:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (1024 * 1024 + 1))
    assert "Message must be shorter than 1048576 bytes" in big.value.response["Error"]["Message"]
    sqs.send_message(QueueUrl=url, MessageBody="x" * (1024 * 1024))  # exactly 1 MiB is accepted
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="fake")
    with pytest.raises(ClientError) as attr:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"ContentBasedDeduplication": "true"})
    assert attr.value.response["Error"]["Code"] == "InvalidAttributeName"
    with pytest.raises(ClientError) as empty:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes={"a": {"DataType": "String",
                                                                                  "StringValue": ""}})
    assert empty.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_batch_operations_and_their_errors(sqs) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="e2e-batch")["QueueUrl"]
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest) as many:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "b"} for i in range(11)])
    assert many.value.response["Error"]["Code"] == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}])
    with pytest.raises(sqs.exceptions.InvalidBatchEntryId):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "bad id!", "MessageBody": "1"}])
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.delete_message_batch(QueueUrl=url, Entries=[])
    with pytest.raises(sqs.exceptions.BatchRequestTooLong):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x" * 300_000} for i in range(4)])
    result = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "ok1", "MessageBody": "one"},
        {"Id": "bad", "MessageBody": "two", "DelaySeconds": 901},
        {"Id": "ok2", "MessageBody": "three", "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
    ])
    assert sorted(e["Id"] for e in result["Successful"]) == ["ok1", "ok2"]
    failed = [(f["Id"], f["Code"], f["SenderFault"]) for f in result["Failed"]]
    assert failed == [("bad", "InvalidParameterValue", True)]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    assert sorted(m["Body"] for m in got) == ["one", "three"]
    changed = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "a", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 60},
        {"Id": "b", "ReceiptHandle": "garbage", "VisibilityTimeout": 60}])
    assert [s["Id"] for s in changed["Successful"]] == ["a"]
    assert [f["Code"] for f in changed["Failed"]] == ["ReceiptHandleIsInvalid"]
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    assert len(deleted["Successful"]) == 2 and deleted["Failed"] == []


def test_long_poll_returns_when_a_message_arrives(sqs) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="e2e-longpoll")["QueueUrl"]
    timer = threading.Timer(0.5, lambda: sqs.send_message(QueueUrl=url, MessageBody="late"))
    timer.start()
    started = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
    elapsed = time.monotonic() - started
    timer.join()
    assert [m["Body"] for m in got["Messages"]] == ["late"]
    assert elapsed < 15  # answered when the message came, not when the 20 s wait ran out


def test_visibility_timeout_and_delay(sqs) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="e2e-visibility")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="v")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # invisible while in flight
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    second = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, MessageSystemAttributeNames=["All"])["Messages"][0]
    assert second["MessageId"] == first["MessageId"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])[
        "Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"][0]["Body"] == "later"


def test_redrive_to_dead_letter_queue(sqs) -> None:  # type: ignore[no-untyped-def]
    dlq_url = sqs.create_queue(QueueName="e2e-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url = sqs.create_queue(QueueName="e2e-src", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        assert len(sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]) == 1
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    moved = sqs.receive_message(QueueUrl=dlq_url, MessageSystemAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in moved] == ["poison"]
    assert moved[0]["Attributes"]["DeadLetterQueueSourceArn"].endswith(":e2e-src")
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)["queueUrls"] == [url]
    with pytest.raises(ClientError) as missing:
        sqs.create_queue(QueueName="e2e-src2", Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn + "-nope", "maxReceiveCount": 2})})
    assert missing.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_fifo_order_and_dedup_with_concurrent_consumers(sqs) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="e2e-order.fifo",
                           Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    groups, per_group = 4, 15
    for n in range(per_group):
        entries = [{"Id": f"g{g}", "MessageBody": f"g{g}-{n}", "MessageGroupId": f"g{g}"} for g in range(groups)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    dup = sqs.send_message(QueueUrl=url, MessageBody="g0-0", MessageGroupId="g0")  # content-based duplicate
    assert dup["SequenceNumber"]
    seen: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            empty = 0
            while empty < 3:
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=30,
                                          WaitTimeSeconds=1).get("Messages", [])
                if not got:
                    empty += 1
                    continue
                with lock:
                    for m in got:
                        group, n = m["Body"].split("-")
                        seen[group].append(int(n))
                sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=consume) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not errors
    assert {g: seen[g] for g in sorted(seen)} == {f"g{g}": list(range(per_group)) for g in range(groups)}
    with pytest.raises(ClientError) as no_group:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert no_group.value.response["Error"]["Code"] == "MissingParameter"


def _signed(server: NimbusServer, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    akid, secret = server.credentials
    req = AWSRequest(method=method, url=server.endpoint + path, data=body, headers=headers)
    SigV4Auth(Credentials(akid, secret), "sqs", "us-east-1").add_auth(req)
    return httpx.request(method, server.endpoint + path, content=body, headers=dict(req.headers.items()), timeout=30)


def test_query_protocol_with_xml_replies(server: NimbusServer) -> None:
    ns = {"q": "http://queue.amazonaws.com/doc/2012-11-05/"}
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    created = _signed(server, "POST", "/", b"Action=CreateQueue&Version=2012-11-05&QueueName=e2e-query"
                      b"&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=40", form)
    assert created.status_code == 200, created.text
    url = ElementTree.fromstring(created.content).find(".//q:QueueUrl", ns).text  # type: ignore[union-attr]
    assert url == f"{server.endpoint}/000000000000/e2e-query"
    body = "a&b <c>\r"
    sent = _signed(server, "POST", "/000000000000/e2e-query", (
        "Action=SendMessage&Version=2012-11-05&MessageBody=" + httpx.QueryParams({"x": body}).get("x").replace(
            "&", "%26").replace("<", "%3C").replace(">", "%3E").replace("\r", "%0D").replace(" ", "+")
        + "&MessageAttribute.1.Name=color&MessageAttribute.1.Value.DataType=String"
          "&MessageAttribute.1.Value.StringValue=red").encode(), form)
    assert sent.status_code == 200, sent.text
    md5 = ElementTree.fromstring(sent.content).find(".//q:MD5OfMessageBody", ns).text  # type: ignore[union-attr]
    assert md5 == hashlib.md5(body.encode()).hexdigest()
    got = _signed(server, "POST", "/000000000000/e2e-query", b"Action=ReceiveMessage&Version=2012-11-05"
                  b"&MessageAttributeName.1=All&AttributeName.1=All", form)
    root = ElementTree.fromstring(got.content)
    assert root.find(".//q:Message/q:Body", ns).text == body  # type: ignore[union-attr]
    assert root.find(".//q:MessageAttribute/q:Value/q:StringValue", ns).text == "red"  # type: ignore[union-attr]
    empty = _signed(server, "POST", "/000000000000/e2e-query", b"Action=ReceiveMessage&Version=2012-11-05", form)
    assert b"<ReceiveMessageResult/>" in empty.content  # old botocore needs the element
    missing = _signed(server, "POST", "/", b"Action=GetQueueUrl&Version=2012-11-05&QueueName=nope", form)
    assert missing.status_code == 400
    error = ElementTree.fromstring(missing.content)
    assert error.find(".//q:Code", ns).text == "AWS.SimpleQueueService.NonExistentQueue"  # type: ignore[union-attr]


def test_aws_cli_queue_worker(server: NimbusServer) -> None:
    aws = shutil.which("aws", path=str(Path(os.sys.executable).parent)) or shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed")
    env = {**os.environ, **server.cli_env(), "AWS_ENDPOINT_URL": server.endpoint, "AWS_PAGER": ""}

    def run(*args: str) -> Any:
        out = subprocess.run([aws, "sqs", *args, "--output", "json", "--endpoint-url", server.endpoint], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    url = run("create-queue", "--queue-name", "e2e-cli")["QueueUrl"]
    run("send-message", "--queue-url", url, "--message-body", "from the cli")
    msg = run("receive-message", "--queue-url", url, "--wait-time-seconds", "1")["Messages"][0]
    assert msg["Body"] == "from the cli"
    run("delete-message", "--queue-url", url, "--receipt-handle", msg["ReceiptHandle"])
    assert run("get-queue-attributes", "--queue-url", url, "--attribute-names", "ApproximateNumberOfMessages")[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_kill_9_after_send_loses_nothing(tmp_path: Path) -> None:
    srv = NimbusServer(tmp_path / "data").start()
    try:
        sqs = srv.client("sqs")
        url = sqs.create_queue(QueueName="e2e-durable")["QueueUrl"]
        ids = set()
        for i in range(5):
            result = sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(n), "MessageBody": f"m{i}-{n}"} for n in range(10)])
            ids.update(e["MessageId"] for e in result["Successful"])
        ids.add(sqs.send_message(QueueUrl=url, MessageBody="last")["MessageId"])
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
    finally:
        srv.stop()
    again = NimbusServer(tmp_path / "data", port=srv.port).start()
    try:
        sqs = again.client("sqs")
        received = set()
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                break
            received.update(m["MessageId"] for m in got)
        assert received == ids
    finally:
        again.stop()


def test_nimbus_queues_cli_and_metrics(sqs, server: NimbusServer) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="e2e-figures")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "m"} for i in range(3)])
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)
    env = {**os.environ, **server.cli_env(), "COLUMNS": "160"}
    shown = subprocess.run([os.sys.executable, "-m", "nimbus", "queues", "--prefix", "e2e-figures", "--json"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)["Queues"]
    assert (row["Visible"], row["InFlight"], row["Delayed"]) == (1, 1, 1)
    assert (row["Sent"], row["Received"], row["Deleted"]) == (4, 2, 1)
    table = subprocess.run([os.sys.executable, "-m", "nimbus", "queues"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert table.returncode == 0 and "e2e-figures" in table.stdout and "In flight" in table.stdout
    metrics = httpx.get(f"{server.endpoint}/metrics", timeout=30).text
    assert 'nimbus_sqs_messages_sent_total{queue="e2e-figures"} 4.0' in metrics
    assert 'nimbus_sqs_messages_visible{queue="e2e-figures"} 1.0' in metrics
    assert 'nimbus_sqs_oldest_message_age_seconds{queue="e2e-figures"}' in metrics

"""The query protocol's flattened form fields become the JSON protocol's shapes; replies and errors come out
in each protocol's shape (api/sqs/wire.py)."""

from __future__ import annotations

import json
from xml.etree import ElementTree

from nimbus.api.sqs import wire
from nimbus.events.sqs.errors import QueueNotFound

NS = {"q": wire.XML_NAMESPACE}


def test_query_fields_become_json_shapes() -> None:
    body = (b"Action=SendMessageBatch&Version=2012-11-05&QueueUrl=http%3A%2F%2Fh%2F000000000000%2Fq"
            b"&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two"
            b"&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=one"
            b"&SendMessageBatchRequestEntry.1.DelaySeconds=5"
            b"&SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=color"
            b"&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String"
            b"&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=red")
    action, params = wire.parse_query(body, "")
    assert action == "SendMessageBatch"
    assert params == {"QueueUrl": "http://h/000000000000/q", "Entries": [
        {"Id": "a", "MessageBody": "one", "DelaySeconds": 5,
         "MessageAttributes": {"color": {"DataType": "String", "StringValue": "red"}}},
        {"Id": "b", "MessageBody": "two"}]}
    action, params = wire.parse_query(b"Action=CreateQueue&QueueName=q&Attribute.1.Name=DelaySeconds"
                                      b"&Attribute.1.Value=3&Tag.1.Key=team&Tag.1.Value=a", "")
    assert params == {"QueueName": "q", "Attributes": {"DelaySeconds": "3"}, "Tags": {"team": "a"}}
    _, params = wire.parse_query(b"", "Action=ReceiveMessage&AttributeName.1=All&MessageAttributeName.1=x.*"
                                      "&MaxNumberOfMessages=ten")
    assert params == {"AttributeNames": ["All"], "MessageAttributeNames": ["x.*"], "MaxNumberOfMessages": "ten"}


def test_xml_replies_and_errors() -> None:
    reply = wire.xml_reply("ReceiveMessage", {"Messages": [{
        "MessageId": "m", "Body": "a<b>&\r", "Attributes": {"SentTimestamp": "1"},
        "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}}]}, "rid")
    root = ElementTree.fromstring(reply)
    assert root.find("q:ReceiveMessageResult/q:Message/q:Body", NS).text == "a<b>&\r"  # type: ignore[union-attr]
    assert root.find(".//q:Attribute/q:Name", NS).text == "SentTimestamp"  # type: ignore[union-attr]
    assert root.find(".//q:MessageAttribute/q:Value/q:StringValue", NS).text == "v"  # type: ignore[union-attr]
    assert b"<DeleteQueueResult" not in wire.xml_reply("DeleteQueue", {}, "rid")
    assert b"<ReceiveMessageResult/>" in wire.xml_reply("ReceiveMessage", {}, "rid")
    batch = ElementTree.fromstring(wire.xml_reply("DeleteMessageBatch", {
        "Successful": [{"Id": "1"}], "Failed": [{"Id": "2", "SenderFault": True, "Code": "C", "Message": "M"}]}, "r"))
    assert batch.find(".//q:DeleteMessageBatchResultEntry/q:Id", NS).text == "1"  # type: ignore[union-attr]
    assert batch.find(".//q:BatchResultErrorEntry/q:SenderFault", NS).text == "true"  # type: ignore[union-attr]
    body, headers = wire.json_error(QueueNotFound())
    assert json.loads(body) == {"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                                "message": "The specified queue does not exist."}
    assert headers == {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"}
    error = ElementTree.fromstring(wire.xml_error(QueueNotFound(), "rid"))
    assert error.find("q:Error/q:Code", NS).text == "AWS.SimpleQueueService.NonExistentQueue"  # type: ignore[union-attr]
    assert error.find("q:Error/q:Type", NS).text == "Sender"  # type: ignore[union-attr]

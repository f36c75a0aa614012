import json
import os


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"message": f"{os.environ['GREETING']} from SAM",
                                                   "where": os.environ["WHERE"]})}

"""conformance/driver_boto3.py: boto3/botocore (Debian's) as a peer in `make conformance`.

A JSON-lines loop: each stdin line is a command ({"op": ...}), each stdout line its
answer, in the neutral form the runner compares (timestamps as {"$ts": "seconds"}).
The runner sets AWS_DATA_PATH to a temporary folder holding the medical-imaging model
from ../shared/reference (Debian's botocore has none). Clients use
Config(inject_host_prefix=False), as the Lua client and the JS SDK do here.
Run with /usr/bin/python3.
"""

import datetime
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, PaginationError, ParamValidationError

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
CLIENTS = {}


def from_neutral(value):
    """{"$ts": seconds} and {"$iso": text} become aware datetimes."""
    if isinstance(value, list):
        return [from_neutral(v) for v in value]
    if isinstance(value, dict):
        if "$ts" in value:
            return EPOCH + datetime.timedelta(microseconds=round(value["$ts"] * 1000000))
        if "$iso" in value:
            return datetime.datetime.fromisoformat(value["$iso"].replace("Z", "+00:00"))
        return {k: from_neutral(v) for k, v in value.items()}
    return value


def to_neutral(value):
    """datetimes become {"$ts": "s.uuuuuu"}; ResponseMetadata is dropped."""
    if isinstance(value, datetime.datetime):
        micros = (value - EPOCH) // datetime.timedelta(microseconds=1)
        return {"$ts": "%d.%06d" % divmod(micros, 1000000)}
    if isinstance(value, list):
        return [to_neutral(v) for v in value]
    if isinstance(value, dict):
        return {k: to_neutral(v) for k, v in value.items() if k != "ResponseMetadata"}
    return value


def neutral_error(exc):
    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        err = exc.response.get("Error", {})
        return {"code": err.get("Code"), "message": err.get("Message"),
                "status": meta.get("HTTPStatusCode"), "request_id": meta.get("RequestId"),
                "attempts": meta.get("RetryAttempts", 0) + 1}
    if isinstance(exc, ParamValidationError):
        return {"code": "ParamValidationError", "message": str(exc)}
    if isinstance(exc, PaginationError):
        return {"code": "PaginationError", "message": str(exc)}
    return {"code": "DriverError", "message": "%s: %s" % (type(exc).__name__, exc)}


def op_client(cmd):
    session = boto3.session.Session(
        aws_access_key_id=cmd["access_key_id"], aws_secret_access_key=cmd["secret_access_key"],
        aws_session_token=cmd.get("session_token"), region_name=cmd["region"])
    config = Config(inject_host_prefix=False,
                    retries={"mode": "standard", "total_max_attempts": cmd.get("max_attempts") or 3})
    CLIENTS[cmd["name"]] = session.client("medical-imaging", endpoint_url=cmd["endpoint"],
                                          config=config)
    return {"ok": True}


def op_search(cmd):
    try:
        res = CLIENTS[cmd["client"]].search_image_sets(**from_neutral(cmd["params"]))
    except Exception as exc:  # every failure is an answer, not a crash
        return {"error": neutral_error(exc)}
    return {"page": to_neutral(res)}


def _paginate(cmd):
    paginator = CLIENTS[cmd["client"]].get_paginator("search_image_sets")
    return paginator.paginate(PaginationConfig=cmd.get("config") or {},
                              **from_neutral(cmd["params"]))


def op_pages(cmd):
    iterator = _paginate(cmd)
    try:
        pages = [to_neutral(p) for p in iterator]
    except Exception as exc:
        return {"error": neutral_error(exc)}
    return {"pages": pages, "resume_token": iterator.resume_token}


def op_full(cmd):
    try:
        return {"result": to_neutral(_paginate(cmd).build_full_result())}
    except Exception as exc:
        return {"error": neutral_error(exc)}


OPS = {"client": op_client, "search": op_search, "pages": op_pages, "full": op_full}


def main():
    for line in sys.stdin:
        try:
            cmd = json.loads(line)
            answer = OPS[cmd["op"]](cmd)
        except Exception as exc:
            answer = {"error": {"code": "DriverError", "message": type(exc).__name__}}
        sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

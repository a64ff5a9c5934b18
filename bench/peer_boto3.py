"""bench/peer_boto3.py: the boto3 contender of `make bench` (Debian's
python3-boto3), run in its own process by bench/run.py with AWS_DATA_PATH
pointing at a folder built from ../shared/reference (botocore 1.29 lacks the
medical-imaging model). argv: URL WORKLOAD [consumer seconds]. Prints the
same JSON line as bench/ours.lua."""
import json
import re
import sys
import time

import boto3
from botocore.config import Config


def status_kb(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s*(\d+)", f.read()).group(1))


def main():
    url, workload = sys.argv[1], sys.argv[2]
    consumer = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    client = boto3.session.Session().client(
        "medical-imaging", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="AKIDBENCH", aws_secret_access_key="bench-secret",
        config=Config(inject_host_prefix=False))
    datastore = "bench000000000000000000000000001"
    st = {"n": 0, "first": None, "last": None, "series": 0}

    def see(s):
        st["n"] += 1
        if st["n"] == 1:
            st["first"] = s["imageSetId"]
        st["last"] = s["imageSetId"]
        st["series"] += s["DICOMTags"]["DICOMSeriesNumber"]

    rss_first = 0
    if workload == "first":
        for s in client.search_image_sets(datastoreId=datastore)["imageSetsMetadataSummaries"]:
            see(s)
        rss_first = status_kb("VmRSS")
    else:
        for page in client.get_paginator("search_image_sets").paginate(datastoreId=datastore):
            for s in page["imageSetsMetadataSummaries"]:
                see(s)
            if not rss_first:
                rss_first = status_kb("VmRSS")
            if workload == "consumer":
                time.sleep(consumer)
    print(json.dumps({"items": st["n"], "first": st["first"], "last": st["last"],
                      "series_sum": st["series"], "rss_first_kb": rss_first,
                      "hwm_kb": status_kb("VmHWM")}))


if __name__ == "__main__":
    main()

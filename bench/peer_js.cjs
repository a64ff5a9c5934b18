// bench/peer_js.cjs: the AWS SDK for JavaScript v3 contender of `make bench`
// (peers/node_modules, installed by `npm ci --prefix peers`), run in its own
// process by bench/run.py. argv: URL WORKLOAD [consumer seconds]. Prints the
// same JSON line as bench/ours.lua.
"use strict";
const fs = require("fs");
const path = require("path");
const [url, workload, consumerArg] = process.argv.slice(2);
const consumer = Number(consumerArg || 0);

function statusKb(field) {
  const m = fs.readFileSync("/proc/self/status", "utf8").match(new RegExp(field + ":\\s*(\\d+)"));
  return Number(m[1]);
}

const sdk = require(path.join(__dirname, "..", "peers", "node_modules", "@aws-sdk", "client-medical-imaging"));
const client = new sdk.MedicalImagingClient({
  region: "us-east-1",
  endpoint: url,
  credentials: { accessKeyId: "AKIDBENCH", secretAccessKey: "bench-secret" },
  disableHostPrefix: true,
});
const DATASTORE = "bench000000000000000000000000001";

async function main() {
  let n = 0, first = null, last = null, series = 0, rssFirst = 0;
  const see = (s) => {
    n += 1;
    if (n === 1) first = s.imageSetId;
    last = s.imageSetId;
    series += s.DICOMTags.DICOMSeriesNumber;
  };
  if (workload === "first") {
    const res = await client.send(new sdk.SearchImageSetsCommand({ datastoreId: DATASTORE }));
    res.imageSetsMetadataSummaries.forEach(see);
    rssFirst = statusKb("VmRSS");
  } else {
    for await (const page of sdk.paginateSearchImageSets({ client }, { datastoreId: DATASTORE })) {
      for (const s of page.imageSetsMetadataSummaries) see(s);
      if (!rssFirst) rssFirst = statusKb("VmRSS");
      if (workload === "consumer") await new Promise((r) => setTimeout(r, consumer * 1000));
    }
  }
  process.stdout.write(JSON.stringify({ items: n, first, last, series_sum: series,
    rss_first_kb: rssFirst, hwm_kb: statusKb("VmHWM") }) + "\n");
  client.destroy();
}
main().catch((e) => { console.error(e && e.stack || e); process.exit(1); });

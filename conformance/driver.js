// conformance/driver.js: the AWS SDK for JavaScript v3 (@aws-sdk/client-medical-imaging,
// pinned in peers/) as a peer in `make conformance`. A JSON-lines loop: each stdin
// line is a command ({"op": ...}), each stdout line its answer, in the neutral form the
// runner compares (timestamps as {"$ts": "seconds"}). Clients are made with
// disableHostPrefix: true (the SDK would put `runtime-` before 127.0.0.1 too).
"use strict";

const path = require("path");
const readline = require("readline");

const PEERS = path.join(__dirname, "..", "peers", "node_modules");
const { MedicalImagingClient, SearchImageSetsCommand } =
  require(path.join(PEERS, "@aws-sdk", "client-medical-imaging"));

const clients = new Map();

// Request values: {"$ts": seconds} and {"$iso": text} become Dates.
function fromNeutral(v) {
  if (Array.isArray(v)) return v.map(fromNeutral);
  if (v && typeof v === "object") {
    if (v.$ts !== undefined) return new Date(Math.round(v.$ts * 1000));
    if (v.$iso !== undefined) return new Date(v.$iso);
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = fromNeutral(x);
    return out;
  }
  return v;
}

// Response values: Dates become {"$ts": "s.mmm"} (a Date holds milliseconds).
function toNeutral(v) {
  if (v instanceof Date) {
    const ms = v.getTime();
    const s = Math.floor(ms / 1000);
    return { $ts: s + "." + String(ms - s * 1000).padStart(3, "0") };
  }
  if (Array.isArray(v)) return v.map(toNeutral);
  if (v && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (k !== "$metadata" && x !== undefined) out[k] = toNeutral(x);
    }
    return out;
  }
  return v;
}

function neutralError(e) {
  const md = e.$metadata || {};
  return {
    code: e.name, message: e.message, status: md.httpStatusCode,
    request_id: md.requestId, attempts: md.attempts,
  };
}

// A named client. A fixed clock (epoch seconds) is applied before each call
// through the SDK's own systemClockOffset, aimed at the middle of that second so
// the few milliseconds until signing never reach the next one.
const ops = {
  client(a) {
    const c = new MedicalImagingClient({
      region: a.region,
      endpoint: a.endpoint,
      disableHostPrefix: true,
      maxAttempts: a.max_attempts || 3,
      credentials: {
        accessKeyId: a.access_key_id, secretAccessKey: a.secret_access_key,
        sessionToken: a.session_token,
      },
    });
    clients.set(a.name, { client: c, clock: a.clock });
    return { ok: true };
  },

  async search(a) {
    const { client, clock } = clients.get(a.client);
    if (clock !== undefined) client.config.systemClockOffset = clock * 1000 + 500 - Date.now();
    try {
      const res = await client.send(new SearchImageSetsCommand(fromNeutral(a.params)));
      return { page: toNeutral(res) };
    } catch (e) {
      if (!e.$metadata) return { error: { code: "DriverError", message: String(e && e.message) } };
      return { error: neutralError(e) };
    }
  },
};

const rl = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
rl.on("line", (line) => {
  queue = queue.then(async () => {
    let answer;
    try {
      const cmd = JSON.parse(line);
      const op = ops[cmd.op];
      if (!op) throw new Error("unknown op " + cmd.op);
      answer = await op(cmd);
    } catch (e) {
      answer = { error: { code: "DriverError", message: String(e && e.message) } };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  });
});

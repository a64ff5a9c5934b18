#!/usr/bin/python3
"""bench/run.py: the driver of `make bench`. Runs each contender (our
paginator, with and without prefetch, the libcurl+cjson floor, the JS SDK v3
and boto3) in its own process against a fresh bench/server.c, and measures
the child's CPU (user+sys, from wait4), wall time, peak RSS and the TCP
connections the server accepted for it. Prints tables of ratios from this
one run. Exits non-zero only when contenders disagree on the items or a
contender fails: timings are reported, never judged."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_BUILD = os.path.join(ROOT, "build", "bench")   # --build changes it
CORE_SO = os.path.join(ROOT, "build", "healthimaging", "core.so")
REFERENCE = os.path.normpath(os.path.join(ROOT, "..", "shared", "reference", "medical-imaging"))
PEERS = os.path.join(ROOT, "peers")
LUA = os.environ.get("LUA", "lua5.4")
PYTHON = "/usr/bin/python3"


class Server:
    """A bench/server.c process on a free loopback port."""

    def __init__(self, pages, latency_ms=0):
        self.proc = subprocess.Popen([os.path.join(BENCH_BUILD, "server"), "--pages", str(pages), "--latency-ms", str(latency_ms)],
                                     stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().strip()
        if not first.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError("bench server did not start: %r" % first)
        self.url = first[len("listening on "):]
        self.info = self.proc.stdout.readline().strip()

    def stats(self):
        with urllib.request.urlopen(self.url + "/_stats", timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def run_child(cmd, env):
    """Runs cmd; returns (stdout, stderr, rusage fields, wall seconds, exit code)."""
    with tempfile.TemporaryFile() as errf:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=errf)
        # Read the (small) output, then reap the child with wait4 for its own
        # rusage: the CPU and peak RSS of that process alone.
        out = proc.stdout.read()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    return (out.decode(), err, {"cpu": ru.ru_utime + ru.ru_stime, "user": ru.ru_utime, "sys": ru.ru_stime,
                                "rss_kb": ru.ru_maxrss}, wall, proc.returncode)


def contenders(have_js, have_boto3, data_path):
    """name -> function(url, workload, consumer) -> (cmd, env)."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    lua_env = dict(base_env, LUA_PATH="./lua/?.lua;;",
                   LUA_CPATH="./build/?.so;%s/?.so;;" % BENCH_BUILD)
    out = {
        "ours": lambda u, w, c: ([LUA, "bench/ours.lua", u, w, str(c)], lua_env),
        "ours+prefetch": lambda u, w, c: ([LUA, "bench/ours.lua", u, w, str(c), "prefetch"], lua_env),
        "floor": lambda u, w, c: ([LUA, "bench/floor.lua", u, w, str(c)], lua_env),
    }
    if have_js:
        out["js-sdk-v3"] = lambda u, w, c: (["node", "bench/peer_js.cjs", u, w, str(c)], base_env)
    if have_boto3:
        env = dict(base_env, AWS_DATA_PATH=data_path)
        out["boto3"] = lambda u, w, c: ([PYTHON, "bench/peer_boto3.py", u, w, str(c)], env)
    return out


def measure(name, make, workload, pages, runs=1, consumer=0.0, latency_ms=0):
    """Runs one contender `runs` times against one fresh server; returns a row."""
    server = Server(pages, latency_ms)
    try:
        samples, seen = [], None
        for _ in range(runs):
            cmd, env = make(server.url, workload, consumer)
            out, err, ru, wall, code = run_child(cmd, env)
            if code != 0:
                return {"name": name, "failed": "exit %d: %s" % (code, err.strip().splitlines()[-1:]),
                        "server": server.info}
            seen = json.loads(out.strip().splitlines()[-1])
            samples.append((ru, wall, seen))
        stats = server.stats()
    finally:
        server.stop()
    med = lambda f: statistics.median(f(s) for s in samples)
    return {
        "name": name, "server": server.info, "runs": runs,
        "cpu": med(lambda s: s[0]["cpu"]), "user": med(lambda s: s[0]["user"]),
        "sys": med(lambda s: s[0]["sys"]), "wall": med(lambda s: s[1]),
        # The contender's own VmHWM: wait4's ru_maxrss also counts the
        # forked driver's pages from before exec.
        "rss_mb": med(lambda s: s[2]["hwm_kb"]) / 1024.0,
        "rss_growth_mb": med(lambda s: (s[2]["hwm_kb"] - s[2]["rss_first_kb"])) / 1024.0,
        "connections": stats["connections"] / runs, "requests": stats["requests"] / runs,
        "rejected": stats["rejected"], "seen": seen,
    }


def fmt_ratio(a, b):
    if not b or a is None:
        return "-"
    return "%.2f" % (a / b)


def print_table(title, rows, note=""):
    by = {r["name"]: r for r in rows if "failed" not in r}
    print()
    print("### " + title)
    if note:
        print(note)
    print()
    cols = ["contender", "CPU s", "wall s", "peak RSS MB", "RSS growth MB", "TCP conns", "requests",
            "CPU ÷ floor", "wall ÷ floor", "CPU ÷ JS", "CPU ÷ boto3"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    for r in rows:
        if "failed" in r:
            print("| %s | failed: %s |" % (r["name"], r["failed"]) + " |" * (len(cols) - 2))
            continue
        floor, js, boto = by.get("floor"), by.get("js-sdk-v3"), by.get("boto3")
        print("| " + " | ".join([
            r["name"], "%.3f" % r["cpu"], "%.3f" % r["wall"], "%.1f" % r["rss_mb"],
            "%.2f" % r["rss_growth_mb"], "%g" % r["connections"], "%g" % r["requests"],
            fmt_ratio(r["cpu"], floor and floor["cpu"]), fmt_ratio(r["wall"], floor and floor["wall"]),
            fmt_ratio(r["cpu"], js and js["cpu"]), fmt_ratio(r["cpu"], boto and boto["cpu"]),
        ]) + " |")


def check_same(title, rows, problems):
    """Every contender must have seen exactly the same items."""
    ok = [r for r in rows if "failed" not in r]
    for r in rows:
        if "failed" in r:
            problems.append("%s: %s failed (%s)" % (title, r["name"], r["failed"]))
    if not ok:
        return
    ref = ok[0]["seen"]
    keys = ("items", "first", "last", "series_sum")
    for r in ok[1:]:
        if any(r["seen"][k] != ref[k] for k in keys):
            problems.append("%s: %s saw other items than %s (%s vs %s)" % (
                title, r["name"], ok[0]["name"], {k: r["seen"][k] for k in keys}, {k: ref[k] for k in keys}))
    for r in ok:
        if r["rejected"]:
            problems.append("%s: the server rejected %d requests of %s" % (title, r["rejected"], r["name"]))


def main():
    global BENCH_BUILD
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=2000, help="pages of 50 in the full scan (2000)")
    ap.add_argument("--first-runs", type=int, default=15, help="runs of the one-search workload (median)")
    ap.add_argument("--peer-first-runs", type=int, default=5, help="runs of it for the SDKs")
    ap.add_argument("--consumer-pages", type=int, default=50, help="pages of the consumer-time scan")
    ap.add_argument("--consumer-ms", type=float, default=20.0, help="consumer time per page, ms")
    ap.add_argument("--latency-ms", type=int, default=20, help="server time per page in that scan, ms")
    ap.add_argument("--only", default="", help="comma-separated contenders (default: all available)")
    ap.add_argument("--smoke", action="store_true",
                    help="a few pages, ours and the floor only: checks items and connections, not timings")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--build", default=BENCH_BUILD, help="where the bench server and floor module are")
    a = ap.parse_args()
    BENCH_BUILD = os.path.abspath(a.build)
    if a.smoke:
        a.pages, a.first_runs, a.consumer_pages, a.consumer_ms, a.latency_ms = 20, 2, 4, 5.0, 5
        a.only = a.only or "ours,ours+prefetch,floor"

    for f in (os.path.join(BENCH_BUILD, "server"), os.path.join(BENCH_BUILD, "bench_floor.so"), CORE_SO):
        if not os.path.exists(f):
            sys.exit("%s is missing: run `make bench`, which builds it" % os.path.relpath(f, ROOT))

    notes, tmp = [], None
    have_ref = os.path.isdir(REFERENCE)
    have_js = have_boto3 = False
    if a.smoke:
        pass
    elif not have_ref:
        notes.append("../shared/reference is absent: running ours and the floor only "
                     "(the SDK peers are compared only where the service model is at hand)")
    else:
        tmp = tempfile.mkdtemp(prefix="hi-bench-")
        model_dir = os.path.join(tmp, "medical-imaging", "2023-07-19")
        os.makedirs(model_dir)
        for f in ("service-2.json", "paginators-1.json", "endpoint-rule-set-1.json"):
            shutil.copy(os.path.join(REFERENCE, f), model_dir)
        have_boto3 = subprocess.run([PYTHON, "-c", "import boto3"], capture_output=True).returncode == 0
        if not have_boto3:
            notes.append("boto3 is not installed (apt-get install python3-boto3): no boto3 row")
        sdk = os.path.join(PEERS, "node_modules", "@aws-sdk", "client-medical-imaging")
        if not os.path.isdir(sdk) and shutil.which("npm"):
            print("installing the JS SDK peer: npm ci --prefix peers", flush=True)
            subprocess.run(["npm", "ci", "--prefix", PEERS, "--no-audit", "--no-fund"], cwd=ROOT)
        have_js = os.path.isdir(sdk) and shutil.which("node") is not None
        if not have_js:
            notes.append("the JS SDK peer is not installed (npm ci --prefix peers): no JS row")

    all_c = contenders(have_js, have_boto3, tmp)
    if a.only:
        all_c = {k: v for k, v in all_c.items() if k in a.only.split(",")}

    problems, results = [], {}
    started = time.monotonic()
    print("# make bench: %s" % time.strftime("%Y-%m-%d %H:%M:%S"))
    print("machine: %d CPUs, %s; Lua: %s; node: %s; boto3: %s" % (
        os.cpu_count(), os.uname().release,
        subprocess.run([LUA, "-v"], capture_output=True, text=True).stdout.strip(),
        subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        if have_js else "-",
        subprocess.run([PYTHON, "-c", "import boto3, botocore; print(boto3.__version__, 'botocore', "
                        "botocore.__version__)"], capture_output=True, text=True).stdout.strip()
        if have_boto3 else "-"))
    for n in notes:
        print("note: " + n)

    # 1. Full scan.
    rows = []
    for name in [n for n in ("floor", "ours", "ours+prefetch", "js-sdk-v3", "boto3") if n in all_c]:
        print("  scan: %s ..." % name, file=sys.stderr, flush=True)
        rows.append(measure(name, all_c[name], "scan", a.pages))
    server_info = next((r["server"] for r in rows if "server" in r), "")
    print("server: " + server_info)
    print_table("Full scan: %d image sets (%d pages of 50), items() iterator" % (a.pages * 50, a.pages), rows,
                "RSS growth = peak RSS (VmHWM) - RSS after the first page, in the contender itself.")
    check_same("scan", rows, problems)
    for r in rows:
        if "failed" not in r and r["name"].startswith(("ours", "floor")) and r["connections"] != 1:
            problems.append("scan: %s opened %g TCP connections, not 1" % (r["name"], r["connections"]))
    results["scan"] = rows

    # 2. One search, process start to first page, including require and client creation.
    rows = []
    for name in [n for n in ("floor", "ours", "js-sdk-v3", "boto3") if n in all_c]:
        print("  first: %s ..." % name, file=sys.stderr, flush=True)
        runs = a.first_runs if name in ("floor", "ours") else a.peer_first_runs
        rows.append(measure(name, all_c[name], "first", 2, runs=runs))
    print_table("One search of one page in a new process (require + client creation + the request; "
                "median of %d runs, %d for the SDKs)" % (a.first_runs, a.peer_first_runs), rows)
    check_same("first", rows, problems)
    results["first"] = rows

    # 3. A consumer that spends a fixed time on each page, against a server
    #    that takes a fixed time to answer.
    rows = []
    for name in [n for n in ("floor", "ours", "ours+prefetch", "js-sdk-v3", "boto3") if n in all_c]:
        print("  consumer: %s ..." % name, file=sys.stderr, flush=True)
        rows.append(measure(name, all_c[name], "consumer", a.consumer_pages,
                            consumer=a.consumer_ms / 1000.0, latency_ms=a.latency_ms))
    c, f, p = a.consumer_ms, a.latency_ms, a.consumer_pages
    print_table("Consumer time C = %g ms a page, server time F = %d ms a page, %d pages" % (c, f, p), rows,
                "Without overlap a page costs C + F = %g ms (%.2f s in all); with prefetch about "
                "max(C, F) = %g ms (%.2f s), plus one F for the first page." % (
                    c + f, p * (c + f) / 1000.0, max(c, f), (p * max(c, f) + f) / 1000.0))
    check_same("consumer", rows, problems)
    results["consumer"] = rows

    # Targets: reported, never enforced (timings are noisy).
    print()
    print("### Targets (from this run; reported, never enforced)")
    by = {k: {r["name"]: r for r in v if "failed" not in r} for k, v in results.items()}

    def line(text, value, goal, ok):
        print("- %s: %s (target %s): %s" % (text, value, goal, "met" if ok else "NOT met"))

    s, fr, cs = by["scan"], by["first"], by["consumer"]
    if "ours" in s and "floor" in s:
        r = s["ours"]["cpu"] / s["floor"]["cpu"]
        line("full scan CPU, ours ÷ floor", "%.2f" % r, "≤ 1.3", r <= 1.3)
        for peer in ("js-sdk-v3", "boto3"):
            if peer in s:
                print("- full scan CPU, %s ÷ ours: %.1f" % (peer, s[peer]["cpu"] / s["ours"]["cpu"]))
        g = s["ours"]["rss_growth_mb"]
        line("items() scan peak RSS - RSS after the first page", "%.2f MB" % g, "≤ 2 MB", g <= 2.0)
        line("TCP connections for the whole scan", "%g" % s["ours"]["connections"], "1",
             s["ours"]["connections"] == 1)
    if "ours" in fr and "floor" in fr:
        r = fr["ours"]["wall"] / fr["floor"]["wall"]
        line("require + client + first search, wall, ours ÷ floor's one request", "%.2f" % r, "≤ 2", r <= 2)
        r = fr["ours"]["cpu"] / fr["floor"]["cpu"]
        print("- the same in CPU: %.2f" % r)
    if "ours" in cs and "ours+prefetch" in cs:
        per = cs["ours+prefetch"]["wall"] / p * 1000.0
        line("consumer scan with prefetch, wall per page", "%.1f ms (without: %.1f ms)" % (
            per, cs["ours"]["wall"] / p * 1000.0), "about max(C, F) = %g ms" % max(c, f),
            per <= max(c, f) * 1.25 + 2)
        line("requests with prefetch", "%g" % cs["ours+prefetch"]["requests"], "%d (one per page)" % p,
             cs["ours+prefetch"]["requests"] == p)
    print()
    print("bench time: %.0f s" % (time.monotonic() - started))

    if a.json:
        with open(a.json, "w") as fjson:
            json.dump({"server": server_info, "results": results}, fjson, indent=1)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        print()
        for pr in problems:
            print("PROBLEM: " + pr)
        sys.exit(1)


if __name__ == "__main__":
    main()

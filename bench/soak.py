#!/usr/bin/env python3
"""`just soak-memory`: Envoy's memory under traffic that could grow the filter's per-VM state.

One Envoy (`--concurrency 1`, core 0) with the filter (`skip_jwt_bearer_tokens` on), nginx
upstream and the local IdP (core 1), john logged in through the gate. After a warm-up of
every kind of request, Envoy's RSS (/proc/PID/status VmRSS) is the reference; then, with
wrk and bench/wrk/soak.lua:

  (a) GET / with john's session cookie, then GET /oauth2/sign_out with the same cookie
  (b) a distinct forged session cookie per request (some as chunk sets _0.._4)
  (c) a distinct forged bearer JWT per request (the IdP's kid and iss, random signature;
      some with random kids, which must not make the filter hammer the IdP's JWKS)
  (d) one valid ID token replayed (the cached path), then thousands of distinct valid ID
      tokens (minted by the IdP) round and round, past the bearer cache's entry bound

Fails (exit 1) on any unexpected status, on more key refreshes than the filter's minimum
interval allows, or when RSS grows more than the session cache's byte bound + the bearer
cache's byte bound + 8 MB over the post-warm-up figure. Writes bench/results/soak-memory.md.
`--before-wasm PATH` also runs phase (a) against another build (informational).

    python3 -m bench.soak [--requests 100000] [--distinct-tokens 3000] [--before-wasm PATH]
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import json
import math
import operator
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from . import envoy_configs as ec
from . import report, tokens
from .browser import Browser, login
from .load import BenchError, Case, verify
from .procs import CLK_TCK, OTHER_CORE, ROOT, Envoy, Procs, free_ports, start_idp, start_nginx

WASM = ROOT / "build" / "wasm_oauth2_proxy.wasm"
SCRIPT = ROOT / "bench" / "wrk" / "soak.lua"
CLIENT_ID = "demo-app"
COOKIE = "_oauth2_proxy"
JOHN = "john@example.com"
SLACK_MB = 8
# The filter refetches an issuer's keys for an unknown kid at most once per this many
# seconds; each refresh is discovery + JWKS.
KEY_REFETCH_MIN_SECS = int(re.search(
    r"const KEY_REFETCH_MIN_SECS: u64 = (\d+);",
    (ROOT / "src" / "issuer" / "mod.rs").read_text()).group(1))
MIB = 1024  # VmRSS is in KiB


def cache_bounds() -> dict[str, int]:
    """The per-VM cache bounds as src/gate/vocab.rs declares them (`8 << 20`, `1024`, ...)."""
    text = (ROOT / "src" / "gate" / "vocab.rs").read_text()
    ops = {ast.LShift: operator.lshift, ast.Mult: operator.mul, ast.Add: operator.add}

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](value(node.left), value(node.right))
        raise ValueError(ast.dump(node))

    out = {}
    for name in ("SESSION_CACHE_ENTRIES", "SESSION_CACHE_BYTES", "BEARER_CACHE_ENTRIES",
                 "BEARER_CACHE_BYTES"):
        m = re.search(rf"const {name}: usize = ([^;]+);", text)
        if not m:
            raise RuntimeError(f"{name} not found in src/gate/vocab.rs")
        out[name] = value(ast.parse(m.group(1).replace("_", ""), mode="eval").body)
    return out


class Soak:
    """nginx, the IdP and (one at a time) the Envoys under test."""

    def __init__(self, procs: Procs):
        self.procs = procs
        ports = free_ports(6)
        self.app_port, self.idp_port = ports[0], ports[1]
        self.envoy_ports = {"soak": (ports[2], ports[3]), "before": (ports[4], ports[5])}
        self.secret = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self.cookie_secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        self.redirect = {n: f"http://127.0.0.1:{p}/oauth2/callback"
                         for n, (p, _) in self.envoy_ports.items()}
        start_nginx(procs, self.app_port)
        start_idp(procs, self.idp_port, list(self.redirect.values()), self.secret)

    def envoy(self, name: str, wasm: Path, bearer: bool) -> Envoy:
        port, admin = self.envoy_ports[name]
        config = {
            "provider": "oidc",
            "oidc_issuer_url": f"http://127.0.0.1:{self.idp_port}",
            "idp_cluster": "idp",
            "client_id": CLIENT_ID,
            "client_secret_env": "OAUTH2_CLIENT_SECRET",
            "cookie_secret_env": "OAUTH2_COOKIE_SECRET",
            "redirect_url": self.redirect[name],
            "email_domains": ["*"],
            "cookie_secure": False,
        }
        if bearer:
            config["skip_jwt_bearer_tokens"] = True
        boot = ec.bootstrap(port, admin, self.app_port, self.idp_port,
                            ec.gate_filter(str(wasm), json.dumps(config)))
        e = Envoy(self.procs, name, boot, port, admin,
                  env={"OAUTH2_CLIENT_SECRET": self.secret,
                       "OAUTH2_COOKIE_SECRET": self.cookie_secret},
                  # The filter's own log lines (provider_loaded, bearer_rejected, ...).
                  args=["--component-log-level", "wasm:info"])
        e.wait_ready()
        return e

    def login(self, e: Envoy) -> str:
        b = Browser()
        try:
            login(b, f"http://127.0.0.1:{e.port}/", e.port, "john", "john")
        finally:
            b.close()
        jar = b.jars.get(e.port, {})
        if COOKIE not in jar:
            raise BenchError(f"login through {e.name} left no {COOKIE} cookie ({sorted(jar)})")
        return jar[COOKIE]

    def log_count(self, e: Envoy, needle: str) -> int:
        try:
            text = (self.procs.workdir / f"{e.log_name}.log").read_text(errors="replace")
        except OSError:
            return 0
        return text.count(needle)


def hwm_kb(e: Envoy) -> int:
    """VmHWM: the highest RSS the process has had, so a peak between readings counts too."""
    for line in Path(f"/proc/{e.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def stat(e: Envoy, name: str) -> int:
    url = f"http://127.0.0.1:{e.admin}/stats?filter=^{re.escape(name)}$"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        n, _, v = line.partition(": ")
        if n == name:
            return int(v)
    return 0


def wrk(e: Envoy, mode: str, n: int, env: dict[str, str], connections: int) -> dict:
    """One wrk run of `mode` until `n` answers: the script says SOAK_DONE, wrk gets SIGINT
    (it otherwise waits out its -d) and prints its JSON line."""
    argv = ["taskset", "-c", OTHER_CORE, "wrk", "-t1", f"-c{connections}", "-d900s",
            "--timeout", "10s", "-s", str(SCRIPT), f"http://127.0.0.1:{e.port}/"]
    full = {**os.environ, **env, "SOAK_MODE": mode, "SOAK_N": str(n)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full)
    watchdog = threading.Timer(1000, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("SOAK_DONE"):
                proc.send_signal(signal.SIGINT)
        err = proc.stderr.read()
        proc.wait()
    finally:
        watchdog.cancel()
    found = next((l for l in lines if l.startswith("WRK_SOAK ")), None)
    if proc.returncode != 0 or found is None:
        raise BenchError(f"{mode}: wrk failed ({proc.returncode}): "
                         f"{(err or ''.join(lines)).strip()[-500:]}")
    return json.loads(found[len("WRK_SOAK "):])


class Phase:
    def __init__(self, key: str, title: str, mode: str, n: int, env: dict[str, str],
                 allowed: set[str], balanced: bool = False):
        self.key, self.title, self.mode, self.n, self.env = key, title, mode, n, env
        # Statuses every answer must have; `balanced`: as many 200s as 302s (pairs).
        self.allowed = allowed
        self.balanced = balanced


def run_phase(s: Soak, e: Envoy, p: Phase, connections: int, reference_kb: int | None) -> dict:
    rss0 = e.rss_kb()
    codes0 = e.response_codes()
    idp0 = stat(e, "cluster.idp.upstream_rq_total")
    loads0 = s.log_count(e, '"event":"provider_loaded"')
    ticks0 = e.cpu_ticks()
    started = time.monotonic()
    r = wrk(e, p.mode, p.n, p.env, connections)
    seconds = time.monotonic() - started
    ticks1 = e.cpu_ticks()
    time.sleep(0.5)  # let the last answers settle before reading the counters
    if e.proc.poll() is not None:
        raise BenchError(f"{p.key}: Envoy exited with {e.proc.returncode}")
    rss1 = e.rss_kb()
    codes1 = e.response_codes()
    envoy_codes = {k: codes1[k] - codes0[k] for k in codes0 if codes1[k] - codes0[k]}
    problems = []
    bad = {k: v for k, v in r["statuses"].items() if k not in p.allowed}
    if bad:
        problems.append(f"unexpected statuses {bad}")
    errors = {k: v for k, v in r["errors"].items() if v}
    if errors:
        problems.append(f"wrk socket errors {errors}")
    seen = sum(r["statuses"].values())
    if seen < p.n:
        problems.append(f"only {seen} of {p.n} answers")
    if p.balanced:
        a, b = r["statuses"].get("200", 0), r["statuses"].get("302", 0)
        if abs(a - b) > connections:
            problems.append(f"{a} × 200 against {b} × 302")
    out = {
        "key": p.key, "title": p.title, "requests": seen, "seconds": seconds,
        "envoy_cpu_us_per_req": (ticks1 - ticks0) / CLK_TCK * 1e6 / max(1, seen),
        "statuses": dict(sorted(r["statuses"].items())), "envoy_codes": envoy_codes,
        "rss_before_kb": rss0, "rss_after_kb": rss1,
        "growth_kb": None if reference_kb is None else rss1 - reference_kb,
        "idp_requests": stat(e, "cluster.idp.upstream_rq_total") - idp0,
        "provider_loads": s.log_count(e, '"event":"provider_loaded"') - loads0,
        "problems": problems,
    }
    growth = "" if reference_kb is None else f", {out['growth_kb'] / MIB:+.1f} MB since warm-up"
    say(f"  {p.key}: {seen} answers in {seconds:.1f}s {out['statuses']}, RSS "
        f"{rss0 / MIB:.1f} -> {rss1 / MIB:.1f} MB{growth}, IdP requests {out['idp_requests']}"
        + (f"; PROBLEMS: {'; '.join(problems)}" if problems else ""))
    return out


def forged_payload(real_id_token: str) -> str:
    """The real token's claims (the IdP's iss, our aud, a live exp) for someone else."""
    c = tokens.claims(real_id_token)
    c.update(sub="forged", email="forged@example.com", preferred_username="forged")
    return tokens.b64url(json.dumps(c, separators=(",", ":")).encode())


def mint(s: Soak, redirect: str, n: int) -> list[str]:
    """`n` distinct ID tokens for john: one authorization-code flow each, with the IdP's
    login session kept (no password form after the first), every one with its own nonce."""
    b = Browser()
    out = set()
    try:
        while len(out) < n:
            t = tokens.authorization_code(s.idp_port, CLIENT_ID, s.secret, redirect, "john",
                                          "john", b)
            out.add(t["id_token"])
    finally:
        b.close()
    return sorted(out)


def phases(n: int, cookie: str, chunk_len: int, kid: str, payload: str, token: str,
           tokens_file: Path, distinct: int, passes: int) -> list[Phase]:
    forged = {"SOAK_COOKIE_NAME": COOKIE, "SOAK_COOKIE_PREFIX": cookie[:2],
              "SOAK_COOKIE_LEN": str(len(cookie)), "SOAK_CHUNKED_EVERY": "10",
              "SOAK_CHUNKS": "5", "SOAK_CHUNK_LEN": str(chunk_len)}
    return [
        Phase("a", "GET / with the session cookie, then /oauth2/sign_out with it", "pairs",
              2 * n, {"SOAK_COOKIE": f"{COOKIE}={cookie}"}, {"200", "302"}, balanced=True),
        Phase("b", "distinct forged session cookies (1 in 10 a set of 5 chunks)",
              "forged_cookie", n, forged, {"401"}),
        Phase("c", "distinct forged bearer JWTs (IdP kid and iss, random signature; "
              "1 in 20 with a random kid)", "forged_bearer", n,
              {"SOAK_KID": kid, "SOAK_PAYLOAD": payload, "SOAK_RANDOM_KID_EVERY": "20"},
              {"401"}),
        Phase("d1", "one valid ID token replayed (cached path)", "replay", n,
              {"SOAK_HEADER_NAME": "Authorization", "SOAK_HEADER_VALUE": f"Bearer {token}"},
              {"200"}),
        Phase("d2", f"{distinct} distinct valid ID tokens, in order, {passes} times round",
              "tokens", distinct * passes, {"SOAK_TOKENS": str(tokens_file)}, {"200"}),
    ]


def soak(args, s: Soak, started: float) -> dict:
    bounds = cache_bounds()
    cache_kb = (bounds["SESSION_CACHE_BYTES"] + bounds["BEARER_CACHE_BYTES"]) // 1024
    limit_kb = cache_kb + SLACK_MB * MIB
    e = s.envoy("soak", args.wasm, bearer=True)
    time.sleep(1)
    idle_kb = e.rss_kb()

    say("logging john in through the gate; minting ID tokens at the IdP")
    cookie = s.login(e)
    minted = mint(s, s.redirect["soak"], args.distinct_tokens + 17)
    token, warm_tokens, distinct_tokens = minted[0], minted[1:17], minted[17:]
    tmp = s.procs.workdir
    (tmp / "warm-tokens.txt").write_text("\n".join(warm_tokens) + "\n")
    (tmp / "tokens.txt").write_text("\n".join(distinct_tokens) + "\n")
    kid = tokens.header(token)["kid"]
    verify(Case("cookie", "session cookie", e, {"Cookie": f"{COOKIE}={cookie}"},
                {"x-seen-user": JOHN}))
    verify(Case("bearer", "bearer token", e, {"Authorization": f"Bearer {token}"},
                {"x-seen-user": JOHN}))
    # Forged chunk sets shaped like bigjohn's real one: 5 cookies of ~3.6 KB each.
    todo = phases(args.requests, cookie, 3640, kid, forged_payload(token), token,
                  tmp / "tokens.txt", len(distinct_tokens), args.passes)

    say(f"warm-up: {args.warmup} requests of each kind")
    warm = phases(args.warmup, cookie, 3640, kid, forged_payload(token), token,
                  tmp / "warm-tokens.txt", len(warm_tokens), 2)
    for p in warm:
        run_phase(s, e, p, args.connections, None)
    time.sleep(1)
    reference = e.rss_kb()
    say(f"RSS after warm-up: {reference / MIB:.1f} MB (idle before the first request: "
        f"{idle_kb / MIB:.1f} MB); limit +{limit_kb / MIB:.0f} MB")

    results = []
    for p in todo:
        say(f"phase {p.key}: {p.title}, {p.n} requests")
        r = run_phase(s, e, p, args.connections, reference)
        if p.key == "c":
            # At most one key refresh (discovery + JWKS) per KEY_REFETCH_MIN_SECS on the
            # filter's whole-second clock (so refreshes can be just over KEY_REFETCH_MIN_SECS
            # - 1 real seconds apart), plus one that may be due when the phase starts.
            allowed = 2 * (math.ceil(r["seconds"] / (KEY_REFETCH_MIN_SECS - 1)) + 1)
            r["idp_allowed"] = allowed
            r["random_kids"] = p.n // 20
            if r["idp_requests"] > allowed:
                r["problems"].append(f"{r['idp_requests']} IdP requests, more than {allowed}")
        elif r["idp_requests"]:
            r["problems"].append(f"{r['idp_requests']} unexpected IdP requests")
        results.append(r)
    final = e.rss_kb()
    peak_kb = hwm_kb(e)
    s.procs.children = [(n, pr) for n, pr in s.procs.children if pr is not e.proc]
    e.proc.terminate()
    e.proc.wait(timeout=10)

    before = None
    if args.before_wasm:
        before = soak_before(args, s)

    # The highest reading after a phase, or the process's high-water mark if higher.
    peak = max([r["growth_kb"] for r in results] + [peak_kb - reference])
    problems = [f"{r['key']}: {p}" for r in results for p in r["problems"]]
    if peak > limit_kb:
        problems.append(f"RSS grew {peak / MIB:.1f} MB over the post-warm-up figure, "
                        f"more than {limit_kb / MIB:.0f} MB")
    return {
        "command": args.command, "started": started, "seconds": time.time() - started,
        "machine": report.machine(), "wasm": wasm_facts(args.wasm),
        "bounds": bounds, "limit_kb": limit_kb, "idle_kb": idle_kb, "reference_kb": reference,
        "final_kb": final, "hwm_kb": peak_kb, "peak_growth_kb": peak, "phases": results,
        "settings": {k: v for k, v in vars(args).items() if k not in ("command",)},
        "before": before, "problems": problems, "passed": not problems,
    }


def soak_before(args, s: Soak) -> dict:
    """Phase (a) only, against another build (the filter before the bounded cache)."""
    say(f"before: phase (a) against {args.before_wasm}")
    e = s.envoy("before", args.before_wasm, bearer=False)
    cookie = s.login(e)
    verify(Case("before", "session cookie", e, {"Cookie": f"{COOKIE}={cookie}"},
                {"x-seen-user": (JOHN, "john")}))
    a = lambda n: Phase("a", "GET / with the session cookie, then /oauth2/sign_out with it",
                        "pairs", 2 * n, {"SOAK_COOKIE": f"{COOKIE}={cookie}"}, {"200", "302"},
                        balanced=True)
    run_phase(s, e, a(args.warmup), args.connections, None)
    time.sleep(1)
    reference = e.rss_kb()
    say(f"  before: RSS after warm-up {reference / MIB:.1f} MB")
    r = run_phase(s, e, a(args.requests), args.connections, reference)
    s.procs.children = [(n, pr) for n, pr in s.procs.children if pr is not e.proc]
    e.proc.terminate()
    e.proc.wait(timeout=10)
    return {"wasm": wasm_facts(args.before_wasm), "label": args.before_label,
            "reference_kb": reference, "phase": r}


def wasm_facts(path: Path) -> dict:
    data = Path(path).read_bytes()
    return {"path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def table(rows: list[dict], label: str = "") -> list[str]:
    lines = ["| phase | requests | time s | Envoy CPU µs/req | statuses | RSS before MB | "
             "RSS after MB | growth since warm-up MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        codes = ", ".join(f"{v} × {k}" for k, v in sorted(r["statuses"].items()))
        lines.append(f"| {label}({r['key']}) {r['title']} | {r['requests']} | {r['seconds']:.1f} | "
                     f"{r['envoy_cpu_us_per_req']:.0f} | {codes} | "
                     f"{r['rss_before_kb'] / MIB:.1f} | {r['rss_after_kb'] / MIB:.1f} | "
                     f"{r['growth_kb'] / MIB:+.1f} |")
    return lines


def markdown(res: dict) -> str:
    m, b, st = res["machine"], res["bounds"], res["settings"]
    c = next(r for r in res["phases"] if r["key"] == "c")
    lines = [
        "# Memory soak",
        "",
        f"- **Command:** `{res['command']}` (took {res['seconds']:.0f} s)",
        f"- **Date:** {m['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; load average at "
        f"start {' '.join(m['loadavg_at_start'])}",
        f"- **Envoy:** {m['envoy']}, one instance, `--concurrency 1`, pinned to core 0; wrk "
        f"(1 thread, {st['connections']} connections, bench/wrk/soak.lua), nginx and the IdP "
        "on core 1",
        f"- **Filter:** `{res['wasm']['path']}`, {res['wasm']['bytes']} bytes, sha256 "
        f"`{res['wasm']['sha256'][:16]}…`, `skip_jwt_bearer_tokens: true`",
        f"- **Result:** {'PASS' if res['passed'] else 'FAIL'}: Envoy's RSS grew at most "
        f"{res['peak_growth_kb'] / MIB:+.1f} MB over its post-warm-up figure "
        f"({res['reference_kb'] / MIB:.1f} MB; high-water mark VmHWM at the end "
        f"{res['hwm_kb'] / MIB:.1f} MB); the limit is the session cache's byte bound "
        f"({b['SESSION_CACHE_BYTES'] >> 20} MiB) + the bearer cache's "
        f"({b['BEARER_CACHE_BYTES'] >> 20} MiB) + {SLACK_MB} MB = {res['limit_kb'] / MIB:.0f} MB.",
        "",
        "RSS is VmRSS of the Envoy process from `/proc/PID/status` (MB = 2^20 bytes), read "
        "before and after each phase; the reference is the figure after a warm-up of "
        f"{st['warmup']} requests of each kind (idle before the first request: "
        f"{res['idle_kb'] / MIB:.1f} MB). Statuses are wrk's count of the answers, every one "
        "checked against the phase's expected status; Envoy's own `downstream_rq_*xx` counts "
        "are in the JSON. Envoy CPU is utime+stime of the Envoy process over the phase, "
        "divided by the answers (wrk keeps Envoy busy: 8 connections, no pause).",
        "",
        *table(res["phases"]),
        "",
        f"Phase (c): {c.get('random_kids', 0)} of the tokens named a random kid; the filter "
        f"asked the IdP {c['idp_requests']} times in {c['seconds']:.0f} s "
        f"({c['provider_loads']} key refreshes logged as `provider_loaded`; each refresh is "
        f"a discovery and a JWKS request; allowed: {c.get('idp_allowed', 0)}, from the "
        f"filter's one refresh per {KEY_REFETCH_MIN_SECS} s of its whole-second clock, i.e. "
        f"more than {KEY_REFETCH_MIN_SECS - 1} s apart). The other phases made no IdP requests.",
        "",
        f"Caches per VM: sessions {b['SESSION_CACHE_ENTRIES']} entries / "
        f"{b['SESSION_CACHE_BYTES'] >> 20} MiB, bearer tokens {b['BEARER_CACHE_ENTRIES']} "
        f"entries / {b['BEARER_CACHE_BYTES'] >> 20} MiB (src/gate/vocab.rs). Phase (d2) sends "
        f"{st['distinct_tokens']} distinct valid tokens, more than the bearer cache holds, so "
        "it evicts; forged credentials are never cached.",
        "",
    ]
    if res["problems"]:
        lines += ["## Problems", "", *[f"- {p}" for p in res["problems"]], ""]
    bf = res.get("before")
    if bf:
        r = bf["phase"]
        lines += [
            "## Before: phase (a) against another build",
            "",
            (f"{bf['label']}: " if bf.get("label") else "") +
            f"`{bf['wasm']['path']}`, {bf['wasm']['bytes']} bytes, sha256 "
            f"`{bf['wasm']['sha256'][:16]}…`, configured the same but without "
            "`skip_jwt_bearer_tokens` (phase (a) needs no bearer token, and builds from before "
            "bearer support refuse the option); same warm-up, same phase:",
            "",
            *table([r], "before "),
            *table(res["phases"][:1], "after ")[2:],
            "",
            f"Before: {r['growth_kb'] / MIB:+.1f} MB over {r['requests'] // 2} pairs, "
            f"{r['growth_kb'] / MIB / max(1, r['requests'] // 2) * 1000:.2f} MB per 1000 "
            f"pairs; after: {res['phases'][0]['growth_kb'] / MIB:+.1f} MB.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=100_000, help="per phase ((a): pairs)")
    p.add_argument("--distinct-tokens", type=int, default=3000)
    p.add_argument("--passes", type=int, default=2, help="rounds over the distinct tokens")
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--wasm", type=Path, default=WASM)
    p.add_argument("--before-wasm", type=Path, help="also run phase (a) against this build")
    p.add_argument("--before-label", help="what --before-wasm is (e.g. the commit it was built "
                   "from), for the report")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak-memory.md")
    p.add_argument("--command", default="just soak-memory", help="recorded in the report")
    args = p.parse_args(argv)
    for f in (args.wasm, args.before_wasm):
        if f is not None and not f.is_file():
            print(f"soak: {f} missing (`just build` makes build/wasm_oauth2_proxy.wasm)",
                  file=sys.stderr)
            return 2
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="wop-soak-") as tmp:
        procs = Procs(Path(tmp))
        try:
            say("starting nginx and the IdP")
            res = soak(args, Soak(procs), started)
        except (BenchError, RuntimeError, tokens.TokenError) as e:
            procs.report_failure("soak", e)
            return 1
        finally:
            procs.stop()
    res["settings"] = {k: str(v) if isinstance(v, Path) else v
                       for k, v in res["settings"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(res))
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    print()
    print("\n".join(table(res["phases"])))
    if res.get("before"):
        print("\nbefore (" + res["before"]["wasm"]["path"] + "):")
        print("\n".join(table([res["before"]["phase"]])))
    print()
    for prob in res["problems"]:
        print(f"soak: PROBLEM: {prob}", file=sys.stderr)
    verdict = "passed" if res["passed"] else "FAILED"
    say(f"{verdict}: peak growth {res['peak_growth_kb'] / MIB:+.1f} MB of "
        f"{res['limit_kb'] / MIB:.0f} MB allowed; wrote {args.out} in "
        f"{time.time() - started:.0f}s")
    return 0 if res["passed"] else 1


def say(msg: str) -> None:
    print(f"soak: {msg}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

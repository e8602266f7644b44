#!/usr/bin/env python3
"""`just bench-refresh`: what a session refresh costs the request that makes it.

nginx, the local IdP with 4-second access tokens and rotating refresh tokens (core 1), and one
Envoy with the filter (core 0). For each of N sessions: log in, then time one request right
away (fresh tokens: the hot path); once every session's access token is due, time one request
per session (each makes the refresh callout: token endpoint, new ID token verified, session
sealed, new cookie on the response), then one more with the new cookie. Reports the latency
distributions and the difference of medians, checks the IdP counted exactly N refreshes and no
failure, and writes bench/results/refresh.md (and .json).

    python3 -m bench.refresh [--sessions 200]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from . import envoy_configs as ec
from .browser import Browser, login
from .cold import percentiles
from .load import BenchError
from .procs import ROOT, Envoy, Procs, free_ports, start_idp, start_nginx

WASM = ROOT / "build" / "wasm_oauth2_proxy.wasm"
COOKIE = "_oauth2_proxy"
ACCESS_TTL = 4


def timed_get(port: int, cookie: str) -> tuple[float, int, list[str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        start = time.perf_counter()
        conn.request("GET", "/", headers={"Cookie": f"{COOKIE}={cookie}"})
        resp = conn.getresponse()
        resp.read()
        ms = (time.perf_counter() - start) * 1e3
        cookies = [v for k, v in resp.getheaders() if k.lower() == "set-cookie"]
        return ms, resp.status, cookies
    finally:
        conn.close()


def new_session_cookie(set_cookies: list[str]) -> str | None:
    for line in set_cookies:
        name, _, rest = line.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    return None


def counters(idp_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{idp_port}/test/counters", timeout=5) as r:
        return json.load(r)


def run(args, procs: Procs) -> dict:
    app_port, idp_port, port, admin = free_ports(4)
    secret = base64.urlsafe_b64encode(os.urandom(24)).decode()
    cookie_secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    redirect = f"http://127.0.0.1:{port}/oauth2/callback"
    start_nginx(procs, app_port)
    start_idp(procs, idp_port, [redirect], secret,
              env={"IDP_ACCESS_TOKEN_TTL": str(ACCESS_TTL), "IDP_ROTATE_REFRESH": "1"})
    config = {
        "oidc_issuer_url": f"http://127.0.0.1:{idp_port}",
        "idp_cluster": "idp",
        "client_id": "demo-app",
        "client_secret_env": "OAUTH2_CLIENT_SECRET",
        "cookie_secret_env": "OAUTH2_COOKIE_SECRET",
        "redirect_url": redirect,
        "email_domains": ["*"],
        "cookie_secure": False,
        "pass_access_token": True,
    }
    boot = ec.bootstrap(port, admin, app_port, idp_port,
                        ec.gate_filter(str(args.wasm), json.dumps(config)))
    e = Envoy(procs, "refresh", boot, port, admin,
              env={"OAUTH2_CLIENT_SECRET": secret, "OAUTH2_COOKIE_SECRET": cookie_secret},
              # The filter's own log lines (session_refreshed, refresh_failed, ...).
              args=["--component-log-level", "wasm:info"])
    e.wait_ready()

    say(f"{args.sessions} logins, each followed by one request on fresh tokens")
    sessions, fresh = [], []
    for _ in range(args.sessions):
        b = Browser()
        try:
            login(b, f"http://127.0.0.1:{port}/", port, "john", "john")
        finally:
            b.close()
        cookie = b.jars.get(port, {}).get(COOKIE)
        if not cookie:
            raise BenchError("a login left no session cookie")
        ms, status, _ = timed_get(port, cookie)
        if status != 200:
            raise BenchError(f"fresh session: {status}")
        fresh.append(ms)
        sessions.append(cookie)
    time.sleep(ACCESS_TTL + 0.5)
    before = counters(idp_port)
    say("one request per session, each making the refresh")
    refreshing, renewed = [], []
    for cookie in sessions:
        ms, status, set_cookies = timed_get(port, cookie)
        new = new_session_cookie(set_cookies)
        if status != 200 or not new:
            raise BenchError(f"refreshing request {len(refreshing) + 1}: {status}, "
                             f"set-cookie: {[c.split(';')[0][:40] for c in set_cookies]}")
        refreshing.append(ms)
        renewed.append(new)
    after = counters(idp_port)
    say("one more request per session with its new cookie")
    again = []
    for cookie in renewed:
        ms, status, set_cookies = timed_get(port, cookie)
        if status != 200 or new_session_cookie(set_cookies):
            raise BenchError(f"refreshed session: {status}, refreshed again: {set_cookies}")
        again.append(ms)
    refreshes = after["refresh"] - before["refresh"]
    failed = after["refresh_failed"] - before["refresh_failed"]
    problems = []
    if refreshes != args.sessions or failed:
        problems.append(f"the IdP counted {refreshes} refreshes ({failed} failed) for "
                        f"{args.sessions} sessions")
    r, f, a = percentiles(refreshing), percentiles(fresh), percentiles(again)
    return {"sessions": args.sessions, "access_token_ttl_s": ACCESS_TTL,
            "refreshing": r, "fresh": f, "after_refresh": a,
            "added_p50_ms": r["p50_ms"] - f["p50_ms"],
            "idp_refreshes": refreshes, "idp_refresh_failures": failed,
            "problems": problems, "passed": not problems}


def markdown(res: dict) -> str:
    def row(label: str, p: dict) -> str:
        return (f"| {label} | {p['n']} | {p['p50_ms']:.2f} | {p['p90_ms']:.2f} | "
                f"{p['p99_ms']:.2f} | {p['min_ms']:.2f} | {p['max_ms']:.2f} |")
    return "\n".join([
        "# Session refresh latency",
        "",
        f"Written by `just bench-refresh` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"One Envoy (one worker) with the filter, the local IdP issuing {res['access_token_ttl_s']}-second"
        " access tokens with rotating refresh tokens, nginx as the app; one client request at a time,"
        " over loopback. Times are the client's, request to full response, in ms.",
        "",
        "| request | n | p50 | p90 | p99 | min | max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        row("right after login (fresh tokens)", res["fresh"]),
        row("access token due: makes the refresh callout", res["refreshing"]),
        row("with the refreshed cookie", res["after_refresh"]),
        "",
        f"The refresh adds {res['added_p50_ms']:.2f} ms at the median. The IdP counted "
        f"{res['idp_refreshes']} refresh grants ({res['idp_refresh_failures']} failed) for "
        f"{res['sessions']} sessions.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--wasm", type=Path, default=WASM)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "refresh.md")
    args = p.parse_args(argv)
    if not args.wasm.is_file():
        print(f"refresh: {args.wasm} missing (`just build`)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wop-refresh-") as tmp:
        procs = Procs(Path(tmp))
        try:
            res = run(args, procs)
        except (BenchError, RuntimeError, OSError) as e:
            procs.report_failure("refresh", e)
            return 1
        finally:
            procs.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(res))
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    print(markdown(res))
    for prob in res["problems"]:
        print(f"refresh: PROBLEM: {prob}", file=sys.stderr)
    return 0 if res["passed"] else 1


def say(msg: str) -> None:
    print(f"refresh: {msg}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

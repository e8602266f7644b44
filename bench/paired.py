#!/usr/bin/env python3
"""`python3 -m bench.paired`: every auth configuration as a listener of ONE Envoy, compared
with the filter-less listener in adjacent short runs; reports the median of the paired
differences with its spread. Part of `just bench` (after `python3 -m bench.run`); also
`just bench-paired`. Stdlib only.

One Envoy (`--concurrency 1`, pinned to core 0; wrk, nginx and the IdP on core 1) holds a
listener per configuration on its own port: no filter (the baseline), the trivial Wasm
filter, the floor of the filter's semantics (the whole header map read and written back with
its headers, no logic), this filter once per measured request kind (session cookie, chunked
session, cached bearer token, `skip_auth_routes` route), Envoy's oauth2 filter, jwt_authn
without and with its JWT cache, and one extra Envoy hop (a filter-less listener that passes
each request on to the baseline listener: what the sidecar pattern costs at Envoy's own
efficiency). Each Wasm listener has its own `vm_id` and
`root_id`, so its plugin configuration gets a VM of its own (Envoy shares a VM between
plugins with the same vm_id and code). Same worker thread, same process, same warm caches:
what differs between two adjacent runs is the listener, not the process.

For each configuration and round: two saturation runs of `--seconds` (wrk, 16 connections)
back to back, one through the configuration's listener and one through the baseline
listener with the identical request (same headers, same path), in alternating order (AB in
one round, BA in the next). Envoy CPU per request is the process's CPU time from
/proc/PID/task/*/schedstat (nanoseconds) around the run, divided by the requests wrk
completed. A configuration's paired difference is its CPU per request minus the baseline's
in the same pair; reported are the median over rounds, the interquartile range and min–max,
and the ratio of the median to the trivial filter's and to native oauth2's. Every run is
checked as in `bench.run`: the credential reaches nginx first (200 from the upstream, with
the expected identity), and any non-2xx answer (wrk's count or the listener's own
`downstream_rq_*xx`) fails the run.

Writes bench/results/paired.json and the section "Paired differences, one Envoy" of
bench/RESULTS.md (beside the per-process table of `bench.run`, whose per-round spreads from
bench/results/latest.json it shows for comparison).

    python3 -m bench.paired [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import cold, report
from . import envoy_configs as ec
from .load import SATURATION_CONNECTIONS, BenchError, Case, verify, wrk
from .procs import CLK_TCK, ROOT, Envoy, Procs, free_ports, start_idp, start_nginx, wait_port
from .run import GATE_WASM, HOSTCALLS_WASM, TRIVIAL_WASM, cases
from .stack import CLIENT_ID, JWT_AUDIENCE, JWT_ISSUER, Stack, gate_plugin_config, mint_jwt

# The filter's cases in `bench.run` share one Envoy; here each gets a listener (and a VM).
GATE_LISTENER = {"session": "gate_session", "chunked": "gate_chunked",
                 "bearer": "gate_bearer", "skip": "gate_skip"}
LISTENERS = ["base", "trivial", "hostcalls", *GATE_LISTENER.values(), "oauth2", "jwt", "jwt_cache",
             "hop"]
WARMUP_SECONDS = 1
SECTION = "Paired differences, one Envoy"


class Listener:
    """One listener of the shared Envoy, shaped like `procs.Envoy` for `load.Case`,
    `load.verify`, `cold` and `run.cases`: its own port and request counters, the
    process's CPU time and RSS."""

    def __init__(self, envoy: Envoy, name: str, port: int):
        self.envoy = envoy
        self.name = name
        self.port = port
        self.admin = envoy.admin
        self.stat_prefix = f"bench_{name}"

    def response_codes(self) -> dict[str, int]:
        return self.envoy.response_codes(self.stat_prefix)

    def cpu_ns(self) -> int:
        return self.envoy.cpu_ns()

    def cpu_ticks(self) -> int:
        return self.envoy.cpu_ticks()

    def rss_kb(self) -> int:
        return self.envoy.rss_kb()


class OneEnvoy:
    """nginx, the IdP and one Envoy with a listener per configuration. Offers what
    `run.cases` and `cold.cookie_sizes` use of `stack.Stack`: `envoys` (by the same names,
    "gate" being the session listener, where logins land), `bearer`, `url`, `id_token`."""

    id_token = Stack.id_token
    url = Stack.url

    def __init__(self, procs: Procs, gate_wasm: Path, trivial_wasm: Path, hostcalls_wasm: Path):
        ports = free_ports(3 + len(LISTENERS))
        self.app_port, self.idp_port, self.admin = ports[:3]
        self.ports = dict(zip(LISTENERS, ports[3:]))
        self.client_secret = base64.urlsafe_b64encode(os.urandom(24)).decode()
        cookie_secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        self.redirect_uris = [
            f"http://127.0.0.1:{self.ports['gate_session']}/oauth2/callback",
            f"http://127.0.0.1:{self.ports['oauth2']}/callback",
        ]
        start_nginx(procs, self.app_port)
        start_idp(procs, self.idp_port, self.redirect_uris, self.client_secret)
        jwt = mint_jwt()
        self.bearer = jwt["token"]

        # Every filter listener has the same plugin configuration (logins go through
        # gate_session's callback; the cookie secret is the process's), a VM of its own.
        plugin = gate_plugin_config(self.idp_port, self.redirect_uris[0])
        filters = {
            "base": [],
            "trivial": ec.trivial_filter(str(trivial_wasm), name="paired-trivial"),
            "hostcalls": ec.trivial_filter(str(hostcalls_wasm), name="paired-hostcalls"),
            **{g: ec.gate_filter(str(gate_wasm), plugin, name=f"paired-{g}")
               for g in GATE_LISTENER.values()},
            "oauth2": ec.native_oauth2(self.idp_port, self.ports["oauth2"], CLIENT_ID),
            "jwt": ec.jwt_authn(JWT_ISSUER, JWT_AUDIENCE, jwt["jwks"], cache=False),
            "jwt_cache": ec.jwt_authn(JWT_ISSUER, JWT_AUDIENCE, jwt["jwks"], cache=True),
            # The sidecar pattern at Envoy's own efficiency: no filter, on to the baseline
            # listener through a second connection manager, as a request through a proxy
            # sidecar crosses a second proxy.
            "hop": [],
        }
        next_hop = {"hop": "next_hop"}
        listeners = [ec.listener(name, self.ports[name], filters[name], f"bench_{name}",
                                 cluster=next_hop.get(name, "app"))
                     for name in LISTENERS]
        secrets = ec.native_oauth2_secrets(self.client_secret,
                                           base64.b64encode(os.urandom(32)).decode())
        boot = ec.bootstrap_listeners(self.admin, self.app_port, self.idp_port, listeners, secrets,
                                      extra_clusters={"next_hop": self.ports["base"]})
        self.envoy = Envoy(procs, "paired", boot, self.ports["base"], self.admin,
                           env={"OAUTH2_CLIENT_SECRET": self.client_secret,
                                "OAUTH2_COOKIE_SECRET": cookie_secret})
        for name in LISTENERS:
            wait_port(self.ports[name], self.envoy.proc, f"envoy-paired listener {name}")
        self.envoys: dict[str, Listener] = {n: Listener(self.envoy, n, self.ports[n]) for n in LISTENERS}
        self.envoys["gate"] = self.envoys["gate_session"]


def paired_cases(stack: OneEnvoy, sessions: dict) -> list[tuple[Case, Case]]:
    """`run.cases` (same titles, requests and identity checks), each filter case on its own
    listener, each with a baseline case: the identical request through the filter-less
    listener."""
    out = []
    for c in cases(stack, sessions):
        if c.key.startswith("base"):
            continue
        if c.key in GATE_LISTENER:
            c.envoy = stack.envoys[GATE_LISTENER[c.key]]
        b = Case(f"{c.key}:baseline", f"no auth filter, the request of {c.key}",
                 stack.envoys["base"], c.headers, path=c.path)
        out.append((c, b))
    return out


def measure(case: Case, seconds: float) -> dict:
    """One saturation run: Envoy CPU (schedstat, ns) and the listener's response codes read
    around it, the credential checked before, anything but 2xx a failure."""
    verify(case)
    codes0 = case.envoy.response_codes()
    ns0, ticks0 = case.envoy.cpu_ns(), case.envoy.cpu_ticks()
    r = wrk(case, seconds, SATURATION_CONNECTIONS, None)
    ns1, ticks1 = case.envoy.cpu_ns(), case.envoy.cpu_ticks()
    codes1 = case.envoy.response_codes()
    delta = {k: codes1[k] - codes0[k] for k in codes0}
    bad = {k: v for k, v in delta.items() if k != "2xx" and v}
    errors = {k: v for k, v in r["errors"].items() if v}
    if bad or errors or r["requests"] == 0 or delta["2xx"] == 0:
        raise BenchError(f"{case.key}: non-2xx responses or errors during the run: "
                         f"envoy {bad or 'none'}, wrk {errors or 'none'}, {r['requests']} requests, "
                         f"{delta['2xx']} 2xx on listener {case.envoy.name}")
    secs = r["duration_us"] / 1e6
    cpu_us = (ns1 - ns0) / 1e3
    return {
        "requests": r["requests"],
        "seconds": secs,
        "rps": r["requests"] / secs,
        "envoy_cpu_us_per_req": cpu_us / r["requests"],
        "envoy_cpu_utilisation": cpu_us / 1e6 / secs,
        # The same run in clock ticks (/proc/PID/stat), as `bench.run` measures: a check.
        "envoy_cpu_us_per_req_ticks": (ticks1 - ticks0) / CLK_TCK * 1e6 / r["requests"],
        "envoy_2xx": delta["2xx"],
    }


def wasm_facts(path: Path) -> dict:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=2, help="length of each run (whole seconds, wrk's -d)")
    p.add_argument("--out", type=Path, default=ROOT / "bench")
    p.add_argument("--command", default="just bench", help="recorded in RESULTS.md")
    args = p.parse_args(argv)
    for f in (GATE_WASM, TRIVIAL_WASM, HOSTCALLS_WASM):
        if not f.is_file():
            print(f"bench.paired: {f} missing; run `just bench`, which builds it", file=sys.stderr)
            return 2

    started = time.time()
    machine = report.machine()
    with tempfile.TemporaryDirectory(prefix="wop-paired-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return run(args, procs, Path(tmp), machine, started)
        except (BenchError, RuntimeError) as e:
            procs.report_failure("bench.paired", e)
            return 1
        finally:
            procs.stop()


def run(args, procs: Procs, tmp: Path, machine: dict, started: float) -> int:
    # The modules as they are now: a rebuild under way elsewhere cannot change them mid-run.
    wasm = {}
    for key, f in (("gate", GATE_WASM), ("trivial", TRIVIAL_WASM), ("hostcalls", HOSTCALLS_WASM)):
        copy = tmp / f.name
        shutil.copyfile(f, copy)
        wasm[key] = copy
    say(f"starting nginx, the IdP and one Envoy with {len(LISTENERS)} listeners")
    stack = OneEnvoy(procs, wasm["gate"], wasm["trivial"], wasm["hostcalls"])
    say("logging in (session cookies, native oauth2 cookies, an ID token)")
    sessions = cold.cookie_sizes(stack)
    todo = paired_cases(stack, sessions)

    say(f"warm-up: {WARMUP_SECONDS}s per listener")
    measure(todo[0][1], WARMUP_SECONDS)
    for c, _ in todo:
        measure(c, WARMUP_SECONDS)
    rss_kb = stack.envoy.rss_kb()

    pairs: dict[str, list[dict]] = {c.key: [] for c, _ in todo}
    for r in range(args.rounds):
        order = todo[r % len(todo):] + todo[:r % len(todo)]
        say(f"round {r + 1}/{args.rounds}: " + ", ".join(c.key for c, _ in order))
        for i, (c, b) in enumerate(order):
            # AB and BA alternate between neighbours and between rounds.
            baseline_first = (r + i) % 2 == 0
            if baseline_first:
                mb = measure(b, args.seconds)
                mc = measure(c, args.seconds)
            else:
                mc = measure(c, args.seconds)
                mb = measure(b, args.seconds)
            pairs[c.key].append({
                "round": r + 1,
                "order": "baseline first" if baseline_first else "configuration first",
                "config": mc,
                "baseline": mb,
                "diff_us": mc["envoy_cpu_us_per_req"] - mb["envoy_cpu_us_per_req"],
            })

    results = {
        "machine": machine,
        "started": started,
        "seconds": time.time() - started,
        "command": args.command,
        "settings": {"rounds": args.rounds, "seconds": args.seconds,
                     "warmup_seconds": WARMUP_SECONDS, "connections": SATURATION_CONNECTIONS,
                     "cpu_source": "/proc/PID/task/*/schedstat"},
        "listeners": {name: {"port": stack.ports[name]} for name in LISTENERS},
        "envoy_rss_kb": rss_kb,
        "wasm": {k: wasm_facts(v) for k, v in wasm.items()},
        "cases": {c.key: {"title": c.title, "listener": c.envoy.name, "path": c.path,
                          "per_process_baseline": c.baseline, "pairs": pairs[c.key]}
                  for c, _ in todo},
    }
    per_process = args.out / "results" / "latest.json"
    path = report.write_paired(args.out, results, per_process)
    say(f"wrote {args.out / 'results' / 'paired.json'} and the section of {path} "
        f"in {time.time() - started:.0f}s")
    return 0


def say(msg: str) -> None:
    print(f"bench.paired: {msg}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`python3 -m bench.floors`: the host-call patterns of the hot path side by side, measured
with the paired method of `bench.paired` in ONE Envoy: a listener per variant of the floor
filter (build/bench_hostcalls.wasm, the variant picked by its plugin configuration, see
bench/trivial/src/lib.rs), the trivial filter, the gate itself, and the filter-less
baseline, each Wasm listener with its own vm_id/root_id. Every variant gets the request of
case 3 of `bench.run` (john's real session cookie, about 1.4 KB), and each round runs it in
an AB/BA pair with the identical request through the baseline listener. Prints a table of
the paired differences (Envoy CPU µs per request: median, IQR, min–max) and writes
bench/results/floors.json. Build the floors first (`just bench-trivial`) and the gate
(`just build`). Stdlib only.

    python3 -m bench.floors [--rounds 5] [--seconds 2] [--only a,b,...] [--baseline base|a|...]

`--baseline a` pairs each variant directly against variant a (Δ < 0: cheaper than a),
a contrast with less noise than the difference of two differences against no filter.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import envoy_configs as ec
from .browser import Browser, login
from .load import BenchError, Case
from .paired import Listener, measure, wasm_facts
from .procs import ROOT, Envoy, Procs, free_ports, start_idp, start_nginx, wait_port
from .run import GATE_WASM, HOSTCALLS_WASM, JOHN, TRIVIAL_WASM
from .stack import CLIENT_ID, gate_plugin_config

# key -> (module, plugin configuration, what it does, sets x-forwarded-user?)
VARIANTS = {
    "a": ("hostcalls", "a", "get whole map, clock, set whole map (the gate today)", True),
    "b": ("hostcalls", "b", "get whole map, clock, remove cookie + 4× replace", True),
    "b_add": ("hostcalls", "b_add", "get whole map, clock, remove cookie + 4× add", True),
    "c": ("hostcalls", "c", "get whole map, no clock, remove cookie + 4× add", True),
    "d": ("hostcalls", "d", "get cookie by name, clock, remove cookie + 4× add (NOT correct)", True),
    "map_get": ("hostcalls", "map_get", "get whole map, clock, write nothing", False),
    "one_add": ("hostcalls", "one_add", "get whole map, clock, 1× add (x-forwarded-user)", True),
    "noop": ("hostcalls", "noop", "no host call at all", False),
    "e": ("trivial", "", "trivial filter: get one header, set one", False),
    "gate": ("gate", None, "the gate itself, session cookie (case 3)", True),
}
WARMUP_SECONDS = 1


def say(msg: str) -> None:
    print(f"bench.floors: {msg}", flush=True)


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def run(args, procs: Procs, tmp: Path) -> int:
    keys = [k for k in VARIANTS if not args.only or k in args.only.split(",") or k == args.baseline]
    wasm = {}
    for key, f in (("gate", GATE_WASM), ("trivial", TRIVIAL_WASM), ("hostcalls", HOSTCALLS_WASM)):
        copy = tmp / f.name
        shutil.copyfile(f, copy)
        wasm[key] = copy

    names = ["base", "login", *keys]
    ports = free_ports(3 + len(names))
    app_port, idp_port, admin = ports[:3]
    port = dict(zip(names, ports[3:]))
    client_secret = base64.urlsafe_b64encode(os.urandom(24)).decode()
    cookie_secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    redirect = f"http://127.0.0.1:{port['login']}/oauth2/callback"
    start_nginx(procs, app_port)
    start_idp(procs, idp_port, [redirect], client_secret)
    plugin = gate_plugin_config(idp_port, redirect)

    filters = {"base": [], "login": ec.gate_filter(str(wasm["gate"]), plugin, name="floors-login")}
    for k in keys:
        module, config, _, _ = VARIANTS[k]
        if module == "gate":
            filters[k] = ec.gate_filter(str(wasm["gate"]), plugin, name=f"floors-{k}")
        else:
            filters[k] = [ec._wasm(f"floors-{k}", str(wasm[module]), config, [])]
    listeners = [ec.listener(n, port[n], filters[n], f"bench_{n}") for n in names]
    boot = ec.bootstrap_listeners(admin, app_port, idp_port, listeners)
    say(f"starting nginx, the IdP and one Envoy with {len(names)} listeners")
    envoy = Envoy(procs, "floors", boot, port["base"], admin,
                  env={"OAUTH2_CLIENT_SECRET": client_secret, "OAUTH2_COOKIE_SECRET": cookie_secret})
    for n in names:
        wait_port(port[n], envoy.proc, f"envoy-floors listener {n}")
    lis = {n: Listener(envoy, n, port[n]) for n in names}

    say("logging in as john (the session cookie of case 3)")
    b = Browser()
    try:
        login(b, f"http://127.0.0.1:{port['login']}/", port["login"], "john", "john")
    finally:
        b.close()
    jar = {k: v for k, v in b.jars.get(port["login"], {}).items() if k.startswith("_oauth2_proxy")}
    cookie = "; ".join(f"{k}={v}" for k, v in sorted(jar.items()))
    say(f"session cookie: {len(jar)} cookie(s), {len(cookie)} bytes")
    headers = {"Cookie": cookie}

    todo = []
    base_expect = {"x-seen-user": JOHN} if args.baseline != "base" and VARIANTS[args.baseline][3] else {}
    for k in keys:
        if k == args.baseline:
            continue
        expect = {"x-seen-user": JOHN} if VARIANTS[k][3] else {}
        c = Case(k, VARIANTS[k][2], lis[k], headers, expect)
        todo.append((c, Case(f"{k}:baseline", args.baseline, lis[args.baseline], headers, base_expect)))

    say(f"warm-up: {WARMUP_SECONDS}s per listener")
    measure(todo[0][1], WARMUP_SECONDS)
    for c, _ in todo:
        measure(c, WARMUP_SECONDS)

    pairs: dict[str, list[dict]] = {c.key: [] for c, _ in todo}
    for r in range(args.rounds):
        order = todo[r % len(todo):] + todo[:r % len(todo)]
        say(f"round {r + 1}/{args.rounds}")
        for i, (c, bl) in enumerate(order):
            baseline_first = (r + i) % 2 == 0
            if baseline_first:
                mb = measure(bl, args.seconds)
                mc = measure(c, args.seconds)
            else:
                mc = measure(c, args.seconds)
                mb = measure(bl, args.seconds)
            pairs[c.key].append({"round": r + 1, "baseline_first": baseline_first,
                                 "config": mc, "baseline": mb,
                                 "diff_us": mc["envoy_cpu_us_per_req"] - mb["envoy_cpu_us_per_req"]})

    rows = []
    print()
    print(f"Paired against: {args.baseline}")
    print(f"| variant | what | paired Δ µs/req median | IQR | min–max | baseline µs/req |")
    print(f"|---|---|---:|---:|---:|---:|")
    for c, _ in todo:
        d = [p["diff_us"] for p in pairs[c.key]]
        q1, med, q3 = quartiles(d)
        base = statistics.median(p["baseline"]["envoy_cpu_us_per_req"] for p in pairs[c.key])
        rows.append({"variant": c.key, "what": c.title, "median_us": med, "q1_us": q1,
                     "q3_us": q3, "min_us": min(d), "max_us": max(d), "baseline_us": base})
        print(f"| {c.key} | {c.title} | {med:+.2f} | {q1:+.2f} … {q3:+.2f} | "
              f"{min(d):+.2f} … {max(d):+.2f} | {base:.2f} |")
    out = ROOT / "bench" / "results" / "floors.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "settings": {"rounds": args.rounds, "seconds": args.seconds, "baseline": args.baseline},
        "cookie_bytes": len(cookie),
        "wasm": {k: wasm_facts(v) for k, v in wasm.items()},
        "rows": rows, "pairs": pairs,
    }, indent=1, ensure_ascii=False) + "\n")
    say(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=2)
    p.add_argument("--only", default="", help="comma-separated variant keys")
    p.add_argument("--baseline", default="base",
                   help="pair against this variant's listener instead of the filter-less one")
    args = p.parse_args(argv)
    for f in (GATE_WASM, TRIVIAL_WASM, HOSTCALLS_WASM):
        if not f.is_file():
            print(f"bench.floors: {f} missing", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="wop-floors-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return run(args, procs, Path(tmp))
        except (BenchError, RuntimeError) as e:
            procs.report_failure("bench.floors", e)
            return 1
        finally:
            procs.stop()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`just bench`: every auth configuration behind the same Envoy and upstream, measured in one
run with interleaved rounds, plus the cold login paths; writes bench/results/*.json and
bench/RESULTS.md. Run through `just bench` (it builds the filters first). Stdlib only.

    python3 -m bench.run [--rounds 5] [--seconds 4] [--paced-seconds 2] [--logins 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from . import cold, report
from .browser import Browser, login
from .load import BenchError, Case, measure
from .procs import ROOT, Procs
from .stack import Stack

GATE_WASM = ROOT / "build" / "wasm_oauth2_proxy.wasm"
TRIVIAL_WASM = ROOT / "build" / "bench_trivial.wasm"
HOSTCALLS_WASM = ROOT / "build" / "bench_hostcalls.wasm"
WARMUP_SECONDS = 2
# What the upstream sees as X-Forwarded-User: the email (`user_id_claim` defaults to "email").
JOHN = "john@example.com"
BIGJOHN = "bigjohn@example.com"


def native_oauth2_cookie(stack: Stack) -> str:
    """Log in through Envoy's own oauth2 filter and keep the cookies it set."""
    port = stack.envoys["oauth2"].port
    b = Browser()
    try:
        login(b, stack.url("oauth2", "/"), port, "john", "john")
    finally:
        b.close()
    return b.cookie_header(port)


def cases(stack: Stack, sessions: dict) -> list[Case]:
    john = sessions["john"]["cookie"]
    big = sessions["bigjohn"]["cookie"]
    e = stack.envoys
    bearer = {"Authorization": f"Bearer {stack.bearer}"}
    # Row 5: john's real ID token from the IdP (see Stack.id_token), no cookie.
    id_token = {"Authorization": f"Bearer {stack.id_token('john')}"}
    chunks = sessions["bigjohn"]["chunks"]
    return [
        # Baselines and floors carry the same cookies as the cases compared with them, so
        # the difference is the filters' work, not Envoy parsing a larger request.
        Case("base", "1. no auth filter (baseline)", e["base"], {"Cookie": john}),
        Case("base_chunked", f"1b. no auth filter, the {chunks} cookies of (4)", e["base"],
             {"Cookie": big}, baseline="base_chunked"),
        Case("trivial", "2. trivial Wasm filter (floor)", e["trivial"],
             {"Cookie": john, "x-bench": "1"}),
        Case("hostcalls", "2b. whole-map read + write-back of (3)'s headers, no logic (the floor "
             "of its semantics)", e["hostcalls"], {"Cookie": john}, {"x-seen-user": JOHN}),
        Case("session", "3. this filter, session cookie", e["gate"], {"Cookie": john},
             {"x-seen-user": JOHN}),
        Case("chunked", f"4. this filter, chunked session (150 groups, {chunks} cookies)",
             e["gate"], {"Cookie": big}, {"x-seen-user": BIGJOHN}, baseline="base_chunked"),
        # Every request after the first finds the token in the filter's bearer cache; the
        # run fails on any non-2xx answer.
        Case("bearer", "5. this filter, bearer JWT (ID token, cached; no cookie)", e["gate"],
             id_token, {"x-seen-user": JOHN}, baseline="base_bearer"),
        Case("base_bearer", "1d. no auth filter, the `Authorization` header of (5)", e["base"],
             id_token, baseline="base_bearer"),
        Case("skip", "6. this filter, `skip_auth_routes` route (no cookie)", e["gate"], {},
             path="/public/app.css", baseline="base_public"),
        Case("base_public", "1c. no auth filter, the request of (6)", e["base"], {},
             path="/public/app.css", baseline="base_public"),
        *before(stack, john, big),
        Case("oauth2", "7. Envoy oauth2 filter, valid cookies", e["oauth2"],
             {"Cookie": native_oauth2_cookie(stack)}),
        Case("jwt", "8a. Envoy jwt_authn, no JWT cache", e["jwt"], bearer, {"x-seen-jwt": "*"}),
        Case("jwt_cache", "8b. Envoy jwt_authn, JWT cache", e["jwt_cache"], bearer,
             {"x-seen-jwt": "*"}),
        *hop(e, john),
    ]


def hop(e: dict, john: str) -> list[Case]:
    """One extra Envoy hop, where the stack has one (`bench.paired`: a listener passing each
    request on to the baseline listener of the same Envoy)."""
    if "hop" not in e:
        return []
    return [Case("hop", "9. one extra Envoy hop (the sidecar pattern at Envoy's efficiency)",
                 e["hop"], {"Cookie": john})]


def before(stack: Stack, john: str, big: str) -> list[Case]:
    """The same two cases against another build of the filter (`--before-wasm`), measured
    in the same interleaved rounds, for an honest before/after of a change."""
    e = stack.envoys.get("gate_before")
    if e is None:
        return []
    # Builds from before `user_id_claim` passed the subject ("john") as the user.
    return [
        Case("session_before", "3′. as 3, filter before the change", e, {"Cookie": john},
             {"x-seen-user": (JOHN, "john")}),
        Case("chunked_before", "4′. as 4, filter before the change", e, {"Cookie": big},
             {"x-seen-user": (BIGJOHN, "bigjohn")}, baseline="base_chunked"),
    ]


# (key, title, why) of rows that cannot be measured; listed in RESULTS.md as such.
NOT_MEASURED: list[tuple[str, str, str]] = []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=4.0, help="saturation run length")
    p.add_argument("--paced-seconds", type=float, default=2.0, help="fixed-rate run length")
    p.add_argument("--logins", type=int, default=200)
    p.add_argument("--first-requests", type=int, default=500)
    p.add_argument("--out", type=Path, default=ROOT / "bench")
    p.add_argument("--command", default="just bench", help="recorded in RESULTS.md")
    p.add_argument("--before-wasm", type=Path, help="another build of the filter to compare with")
    args = p.parse_args(argv)
    for f in (GATE_WASM, TRIVIAL_WASM, HOSTCALLS_WASM):
        if not f.is_file():
            print(f"bench: {f} missing; run `just bench`, which builds it", file=sys.stderr)
            return 2

    started = time.time()
    machine = report.machine()
    with tempfile.TemporaryDirectory(prefix="wop-bench-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return run(args, procs, machine, started)
        except (BenchError, RuntimeError) as e:
            procs.report_failure("bench", e)
            return 1
        finally:
            procs.stop()


def run(args, procs: Procs, machine: dict, started: float) -> int:
    say("starting nginx, the IdP and the Envoys")
    stack = Stack(procs, GATE_WASM, TRIVIAL_WASM, HOSTCALLS_WASM, args.before_wasm)
    time.sleep(1)
    rss_idle = {name: e.rss_kb() for name, e in stack.envoys.items()}
    say("logging in (session cookie sizes)")
    sessions = cold.cookie_sizes(stack)
    todo = cases(stack, sessions)

    say(f"warm-up: {WARMUP_SECONDS}s per configuration")
    for c in todo:
        measure(c, WARMUP_SECONDS, paced=False)
    rss = {c.key: c.envoy.rss_kb() for c in todo}

    runs: dict[str, dict[str, list]] = {c.key: {"saturated": [], "paced": []} for c in todo}
    for r in range(args.rounds):
        # Rotate the order each round so no configuration always follows the same one.
        order = todo[r % len(todo):] + todo[:r % len(todo)]
        say(f"round {r + 1}/{args.rounds}: " + ", ".join(c.key for c in order))
        for c in order:
            runs[c.key]["saturated"].append(measure(c, args.seconds, paced=False))
            runs[c.key]["paced"].append(measure(c, args.paced_seconds, paced=True))

    say(f"cold paths: {args.first_requests} first requests, {args.logins} logins")
    first = cold.first_request(stack, args.first_requests)
    callback = cold.callbacks(stack, args.logins)

    results = {
        "machine": machine,
        "started": started,
        "seconds": time.time() - started,
        "command": args.command,
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("out", "command", "before_wasm")},
                     "warmup_seconds": WARMUP_SECONDS},
        "cases": {c.key: {"title": c.title, "rss_kb": rss[c.key], "envoy": c.envoy.name,
                           "baseline": c.baseline, **runs[c.key]} for c in todo},
        "rss_kb_before_first_request": rss_idle,
        "before_wasm": str(args.before_wasm) if args.before_wasm else None,
        "not_measured": {k: {"title": t, "why": why} for k, t, why in NOT_MEASURED},
        "cold": {
            "first_request": first,
            "callback": callback,
            "cookies": {u: {k: v for k, v in s.items() if k != "cookie"} for u, s in sessions.items()},
        },
        "wasm_bytes": {"gate": GATE_WASM.stat().st_size, "trivial": TRIVIAL_WASM.stat().st_size,
                       "hostcalls": HOSTCALLS_WASM.stat().st_size},
        "criterion": report.criterion(ROOT / "target" / "criterion"),
    }
    report.write(args.out, results)
    say(f"bench: wrote {args.out / 'RESULTS.md'} in {time.time() - started:.0f}s")
    return 0


def say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

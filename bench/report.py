"""Turns the benchmark's raw runs into bench/results/*.json and bench/RESULTS.md: medians with
their spread, differences to the baseline, and the issue's targets, each marked met or
missed from this run's numbers. Stdlib only."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from .procs import ENVOY


def machine() -> dict:
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), platform.processor())
    envoy = subprocess.run([str(ENVOY), "--version"], capture_output=True, text=True).stdout
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "envoy": envoy.strip().split("version:")[-1].strip(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def criterion(root: Path) -> dict:
    """Median estimate (ns) of every criterion benchmark run so far."""
    out = {}
    for meta in sorted(root.glob("**/new/benchmark.json")):
        try:
            bench = json.loads(meta.read_text())
            est = json.loads((meta.parent / "estimates.json").read_text())
            out[bench["full_id"]] = est["median"]["point_estimate"]
        except (OSError, KeyError, ValueError):
            continue
    return out


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(results: dict) -> dict:
    cases = results["cases"]
    s = {}
    for key, c in cases.items():
        s[key] = {
            "title": c["title"],
            "rps": _stats([r["rps"] for r in c["saturated"]]),
            "cpu_us": _stats([r["envoy_cpu_us_per_req"] for r in c["saturated"]]),
            "envoy_busy": _stats([r["envoy_cpu_utilisation"] for r in c["saturated"]]),
            "p50_us": _stats([r["latency_us"]["p50"] for r in c["paced"]]),
            "p99_us": _stats([r["latency_us"]["p99"] for r in c["paced"]]),
            "paced_rps": _stats([r["rps"] for r in c["paced"]]),
            "rss_mb": c["rss_kb"] / 1024,
        }
    for key, v in s.items():
        base = s[cases[key].get("baseline", "base")]
        v["baseline"] = cases[key].get("baseline", "base")
        v["added_us"] = v["cpu_us"]["median"] - base["cpu_us"]["median"]
        v["rps_vs_base"] = v["rps"]["median"] / base["rps"]["median"]
    return s


def targets(results: dict, s: dict) -> list[tuple[str, str, bool]]:
    add = {k: v["added_us"] for k, v in s.items()}
    cold = results["cold"]
    t = []
    ratio = add["session"] / add["hostcalls"] if add["hostcalls"] > 0 else float("inf")
    t.append(("Hot path (3) ≤ 1.1× the floor of its semantics (2b)",
              f"{add['session']:.1f} µs vs {add['hostcalls']:.1f} µs = {ratio:.2f}×", ratio <= 1.1))
    ratio = add["session"] / add["trivial"] if add["trivial"] > 0 else float("inf")
    t.append(("(informational) Hot path (3) against the trivial filter (2)",
              f"{add['session']:.1f} µs vs {add['trivial']:.1f} µs = {ratio:.2f}×", None))
    t.append(("(informational) Hot path (3) against native oauth2 (7)",
              f"{add['session']:.1f} µs vs {add['oauth2']:.1f} µs added; "
              f"{s['session']['rps']['median']:.0f} vs {s['oauth2']['rps']['median']:.0f} req/s",
              None))
    ratio = add["chunked"] / add["session"] if add["session"] > 0 else float("inf")
    t.append(("Chunked session (4) within 1.2× of (3), each over its own baseline",
              f"{add['chunked']:.1f} µs (over 1b) vs {add['session']:.1f} µs = {ratio:.2f}×",
              ratio <= 1.2))
    if "bearer" in add:
        ratio = add["bearer"] / add["session"] if add["session"] > 0 else float("inf")
        t.append(("Cached bearer JWT (5) within 1.2× of the session hot path (3), "
                  "each over its own baseline",
                  f"{add['bearer']:.1f} µs (over 1d) vs {add['session']:.1f} µs = {ratio:.2f}×",
                  ratio <= 1.2))
    else:
        t.append(("Cached bearer JWT (5) within 1.2× of the session hot path (3)",
                  "not measured", False))
    cb = cold["callback"]["p50_ms"]
    t.append(("Callback p50 < 5 ms on loopback", f"{cb:.2f} ms", cb < 5))
    fr = cold["first_request"]["added_p50_ms"]
    t.append(("First-request 302 adds < 1 ms", f"{fr * 1000:+.0f} µs at p50 vs the baseline", fr < 1))
    drss = s["session"]["rss_mb"] - s["trivial"]["rss_mb"]
    t.append(("Envoy RSS ≤ 12 MB above the trivial filter's", f"{drss:+.1f} MB", drss <= 12))
    size = results["wasm_bytes"]["gate"]
    t.append(("Optimized .wasm < 1 MB", f"{size / 1024:.0f} KiB", size < 1 << 20))
    return t


def _rng(v: dict, fmt: str) -> str:
    return f"{v['median']:{fmt}} ({v['min']:{fmt}}–{v['max']:{fmt}})"


def markdown(results: dict, s: dict) -> str:
    m = results["machine"]
    st = results["settings"]
    lines = [
        "# Benchmark results",
        "",
        f"- **Command:** `{results['command']}` (took {results['seconds']:.0f} s)",
        f"- **Date:** {m['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; "
        f"load average at start {' '.join(m['loadavg_at_start'])}",
        f"- **Envoy:** {m['envoy']}, `--concurrency 1`, pinned to core 0 with `taskset`; "
        "wrk, nginx (upstream) and the IdP on core 1",
        f"- **Runs:** {st['warmup_seconds']} s warm-up each, then {st['rounds']} interleaved rounds of a "
        f"{st['seconds']:.0f} s saturation run (wrk, 16 connections) and a {st['paced_seconds']:.0f} s "
        "paced run (2 connections, 1 ms pause between requests) per configuration; "
        "median (min–max) over rounds",
        "",
        "Envoy CPU is utime+stime of the Envoy process from `/proc/PID/stat` around each run, "
        "divided by the requests served. Every run was preceded by a check that the credential "
        "reaches nginx (200 from the upstream, with the expected identity) and failed on any "
        "non-2xx answer (wrk's count and Envoy's `downstream_rq_*xx` stats). \"Added\" is "
        "against the same request through Envoy without a filter: (1) for the rows carrying "
        "(3)'s session cookie, (1b) for (4)'s chunks, (1c) for (6)'s cookie-less request, "
        "(1d) for (5)'s `Authorization: Bearer` header (john's ID token from the IdP, no "
        "cookie).",
        "",
        "| configuration | req/s | Envoy CPU µs/req | added vs baseline | req/s vs baseline | "
        "p50 / p99 µs (paced) | Envoy RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = ["base", "base_chunked", "base_public", "base_bearer", "trivial", "hostcalls",
             "session", "chunked", "session_before", "chunked_before", "bearer", "skip", "oauth2", "jwt", "jwt_cache"]
    for key in order:
        if key not in s and key not in results["not_measured"]:
            continue
        if key in results["not_measured"]:
            nm = results["not_measured"][key]
            lines.append(f"| {nm['title']} | {nm['why']} | | | | | |")
            continue
        v = s[key]
        lines.append(
            f"| {v['title']} | {_rng(v['rps'], '.0f')} | {_rng(v['cpu_us'], '.1f')} | "
            f"{v['added_us']:+.1f} | {v['rps_vs_base']:.2f}× | "
            f"{v['p50_us']['median']:.0f} / {v['p99_us']['median']:.0f} "
            f"at {v['paced_rps']['median']:.0f}/s | {v['rss_mb']:.1f} |")
    if results.get("before_wasm"):
        lines += ["", f"3′ and 4′ run another build of the filter, `{results['before_wasm']}`, "
                  "in the same rounds with the same cookies: the before/after of this change."]
    c = results["cold"]
    fr, cb = c["first_request"], c["callback"]
    lines += [
        "",
        "## Cold paths (real IdP on loopback, client-side latency)",
        "",
        "| path | n | p50 ms | p90 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
        f"| first request → 302 to the IdP | {fr['redirect']['n']} | {fr['redirect']['p50_ms']:.3f} | "
        f"{fr['redirect']['p90_ms']:.3f} | {fr['redirect']['p99_ms']:.3f} |",
        f"| same client, baseline Envoy → 200 | {fr['baseline']['n']} | {fr['baseline']['p50_ms']:.3f} | "
        f"{fr['baseline']['p90_ms']:.3f} | {fr['baseline']['p99_ms']:.3f} |",
        f"| login callback (code exchange, ID-token check, sealing) → 302 | {cb['n']} | "
        f"{cb['p50_ms']:.2f} | {cb['p90_ms']:.2f} | {cb['p99_ms']:.2f} |",
        "",
        f"First-request redirect: {fr['added_p50_ms'] * 1000:+.0f} µs at p50 against the baseline "
        "round trip (a negative number: the local 302 skips the upstream hop the baseline makes). "
        "The callback time includes the IdP's token endpoint (node oidc-provider on core 1); "
        "Envoy's bucketed histogram of the IdP's answers is in the JSON.",
        "",
        "| session cookie | chunks | bytes sent back |",
        "| --- | --- | --- |",
    ]
    for user, ck in c["cookies"].items():
        lines.append(f"| {user}: {ck['what']} | {ck['chunks']} | {ck['bytes']} |")
    lines += ["", "## Targets", "", "| target | this run | met |", "| --- | --- | --- |"]
    for name, value, ok in targets(results, s):
        met = "—" if ok is None else "yes" if ok else "no"
        lines.append(f"| {name} | {value} | {met} |")
    idle = results["rss_kb_before_first_request"]
    lines += ["", "Envoy RSS before its first request (MB): " + ", ".join(
        f"{k} {v / 1024:.1f}" for k, v in idle.items()) + "."]
    w = results["wasm_bytes"]
    lines += ["", f"Optimized filter: {w['gate']} bytes; trivial filter: {w['trivial']} bytes.", ""]
    lines += _reading(s, idle, w)
    if results["criterion"]:
        lines += ["## Core micro-benchmarks (criterion, native, median)", "",
                  "| benchmark | time |", "| --- | --- |"]
        for name, ns in results["criterion"].items():
            lines.append(f"| {name} | {_ns(ns)} |")
        lines.append("")
    return "\n".join(lines)



def _reading(s: dict, idle: dict, w: dict) -> list[str]:
    """What the missed targets come from, in this run's own numbers."""
    add = {k: v["added_us"] for k, v in s.items()}
    gate_rss = idle.get("gate", 0) / 1024
    trivial_rss = idle.get("trivial", 0) / 1024
    base_rss = idle.get("base", 0) / 1024
    return [
        "## Reading the targets",
        "",
        f"- **Hot path.** No cryptography runs on it. A cached session adds "
        f"{add['session']:.1f} µs; (2b), a filter that makes only the same host calls (read "
        "the whole header map, since every identity header must be stripped; read the clock; "
        f"write the map back once), adds {add['hostcalls']:.1f} µs, "
        f"{add['hostcalls'] / add['trivial']:.2f}× the trivial filter's "
        f"{add['trivial']:.1f} µs. The remaining "
        f"{add['session'] - add['hostcalls']:.1f} µs is this filter's own work. "
        "`just bench-profile` (`bench/results/profile.md`) splits Envoy's CPU with perf: "
        "about 10 µs of a session request is the filter's compiled Wasm (1 µs for the "
        "trivial filter's), the rest host-call work inside Envoy and the C++ glue into "
        "Wasm. `just bench-v8` (`bench/results/v8-profile.md`) times and names the Wasm "
        "functions under Node.js's V8: reading the header map as the proxy-wasm SDK does "
        "(two allocations per header), `gate::decide` and writing the whole map back; the "
        "criterion figure (`gate_decide/session_cached` below, natively) is the decision "
        "alone. A "
        "speed-optimized build (`opt-level = \"s\"`) ran that hot path 32% faster under "
        "Node's V8 but costs about 2 MB more Envoy RSS, so the size-optimized build stays.",
        f"- **Chunked session.** Against a baseline carrying the same 18 KB of cookies (1b) "
        f"it adds {add['chunked']:.1f} µs; most of its cost over (3) is Envoy parsing and "
        "forwarding the larger request, which Envoy pays with or without a filter.",
        *_bearer_reading(s, add),
        f"- **Memory.** Envoy with no filter holds {base_rss:.1f} MB; loading any Wasm module "
        f"(the 68 KB trivial filter) costs {trivial_rss - base_rss:.1f} MB; this "
        f"{w['gate'] / 1024:.0f} KiB module costs another {gate_rss - trivial_rss:.1f} MB before "
        "its first request, and none of it grows with traffic. Envoy's V8 compiles the whole "
        "module with TurboFan when it loads (proxy-wasm turns Liftoff off): about 3 MB of "
        "compiled code, the module's bytes kept twice, and in tcmalloc the compiler's "
        "metadata and the scratch memory it freed. That cost follows the size of the largest "
        "functions more than the total: the build caps wasm-opt's one-caller inlining, which "
        "had made 47 KB functions and cost 7-8 MB, and the Envoy configs' "
        "`memory_allocator_manager` hands freed pages back. Leaving out ES384 and "
        "`private_key_jwt` would save 3-4 MB more; about 20 bytes of RSS per byte of code "
        "remain.",
        "",
    ]


def _bearer_reading(s: dict, add: dict) -> list[str]:
    if "bearer" not in s:
        return []
    return [
        f"- **Bearer JWT.** John's ID token, sent as `Authorization: Bearer` without a "
        f"cookie, adds {add['bearer']:.1f} µs over the same request through Envoy without a "
        f"filter (1d), against {add['session']:.1f} µs for the session cookie (3). The token "
        "is verified once (an RSA signature check, `jwt_verify/RS256` below) and then found "
        "in the per-VM bearer cache by its exact value, so every measured request takes the "
        "cached path (every answer was a 2xx from nginx, as john). Verifying on every "
        "request would cost far more: `just soak-memory` measures a forged token's full "
        "signature check at several hundred µs of Envoy CPU.",
    ]


def _ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def write(out: Path, results: dict) -> None:
    s = summarize(results)
    results["summary"] = s
    results["targets"] = [{"target": n, "value": v, "met": ok} for n, v, ok in targets(results, s)]
    raw = out / "results"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "latest.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (out / "RESULTS.md").write_text(markdown(results, s))


# --- `python3 -m bench.paired`: one Envoy, paired differences -------------------------------

PAIRED_SECTION = "Paired differences, one Envoy"
PAIRED_ORDER = ["trivial", "hostcalls", "session", "chunked", "bearer", "skip", "oauth2", "jwt",
                "jwt_cache", "hop"]


def _spread(values: list[float]) -> dict:
    """Median, quartiles (inclusive method: for 5 values, the 2nd and 4th) and range."""
    v = sorted(values)
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return {"n": len(v), "median": statistics.median(v), "q1": q1, "q3": q3,
            "iqr": q3 - q1, "min": v[0], "max": v[-1], "range": v[-1] - v[0]}


def per_process_spreads(latest: dict) -> dict:
    """From `bench.run`'s results: per configuration, the difference to its baseline within
    each round (the two ran in separate Envoys, minutes apart at most), with its spread, and
    the table's "added" (difference of the medians)."""
    out = {}
    cases = latest.get("cases", {})
    for key, c in cases.items():
        base = cases.get(c.get("baseline", "base"))
        if key.startswith("base") or base is None:
            continue
        diffs = [a["envoy_cpu_us_per_req"] - b["envoy_cpu_us_per_req"]
                 for a, b in zip(c["saturated"], base["saturated"])]
        if not diffs:
            continue
        added = statistics.median(r["envoy_cpu_us_per_req"] for r in c["saturated"]) \
            - statistics.median(r["envoy_cpu_us_per_req"] for r in base["saturated"])
        out[key] = {"baseline": c.get("baseline", "base"), "added_us": added,
                    "per_round_diff_us": _spread(diffs)}
    return out


def summarize_paired(results: dict, latest: dict | None) -> dict:
    s = {}
    for key, c in results["cases"].items():
        pairs = c["pairs"]
        s[key] = {
            "title": c["title"],
            "diff_us": _spread([p["diff_us"] for p in pairs]),
            "config_cpu_us": statistics.median(p["config"]["envoy_cpu_us_per_req"] for p in pairs),
            "baseline_cpu_us": statistics.median(p["baseline"]["envoy_cpu_us_per_req"] for p in pairs),
            "config_rps": statistics.median(p["config"]["rps"] for p in pairs),
            # The same runs in clock ticks, to show what schedstat's resolution buys.
            "diff_us_ticks": _spread([p["config"]["envoy_cpu_us_per_req_ticks"]
                                      - p["baseline"]["envoy_cpu_us_per_req_ticks"] for p in pairs]),
        }
    for ref in ("trivial", "hostcalls", "oauth2", "session"):
        d = s.get(ref, {}).get("diff_us", {}).get("median")
        for v in s.values():
            v[f"x_{ref}"] = v["diff_us"]["median"] / d if d and d > 0 else None
    pp = per_process_spreads(latest) if latest else {}
    for key, v in s.items():
        v["per_process"] = pp.get(key)
    return s


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def paired_markdown(results: dict, s: dict, latest: dict | None) -> str:
    m, st = results["machine"], results["settings"]
    w = results["wasm"]
    lines = [
        f"## {PAIRED_SECTION}",
        "",
        f"- **Command:** `{results['command']}` → `python3 -m bench.paired` "
        f"(took {results['seconds']:.0f} s), {m['date']}; load average at start "
        f"{' '.join(m['loadavg_at_start'])}",
        "- **One Envoy** (`--concurrency 1`, core 0; wrk, nginx and the IdP on core 1) with a "
        "listener per configuration: no filter (the baseline), the two Wasm floors, this filter "
        "once per request kind (3)–(6), native oauth2, jwt_authn without and with cache, and a "
        "filter-less listener passing each request on to the baseline listener (9: one extra "
        "Envoy hop). Each "
        "Wasm listener has its own `vm_id`/`root_id`, so a VM of its own "
        f"(filter sha256 `{w['gate']['sha256'][:16]}…`, {w['gate']['bytes']} bytes). "
        f"Envoy RSS after warm-up: {results['envoy_rss_kb'] / 1024:.0f} MB for all of them.",
        f"- **Runs:** {st['warmup_seconds']} s warm-up per listener, then {st['rounds']} rounds; "
        f"in each, per configuration, two adjacent {st['seconds']} s saturation runs (wrk, "
        f"{st['connections']} connections): its listener, and the baseline listener with the "
        "identical request (same headers, same path), the order alternating (AB, BA). Envoy "
        "CPU per request is the process's CPU time from `/proc/PID/task/*/schedstat` "
        "(nanoseconds) around the run over the requests wrk completed; every run checked as "
        "above (credential at nginx first, any non-2xx fails).",
        "- **Paired Δ** is the configuration's CPU per request minus the baseline's in the same "
        "pair: median, interquartile range (inclusive quartiles) and min–max over the rounds; "
        "× (2), × (2b) and × (7) divide the median by the trivial filter's, the semantics "
        "floor's and native oauth2's.",
    ]
    have_pp = any(v["per_process"] for v in s.values())
    if have_pp:
        when = latest.get("machine", {}).get("date", "?")
        lines.append(
            "- **Per process** (the table above, `bench/results/latest.json`, run of "
            f"{when}): \"added\" is its difference of medians; its spread is that of the "
            "per-round differences (configuration minus its baseline Envoy in the same round, "
            "each a separate process). Rows (2), (2b), (7), (8a), (8b) are there measured "
            "against (1), which carries john's cookie rather than exactly their request.")
    lines += [
        "",
        "| configuration | Envoy CPU µs/req, config / baseline | paired Δ µs/req | IQR | min–max "
        "| × (2) | × (2b) | × (7) | per process: added | per-round Δ IQR | min–max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    narrower_iqr = narrower_range = compared = 0
    iqr_ratios = []
    for key in PAIRED_ORDER + [k for k in s if k not in PAIRED_ORDER]:
        if key not in s:
            continue
        v = s[key]
        d = v["diff_us"]
        row = (f"| {v['title']} | {v['config_cpu_us']:.1f} / {v['baseline_cpu_us']:.1f} | "
               f"{d['median']:+.1f} | {d['q1']:+.1f} … {d['q3']:+.1f} ({d['iqr']:.1f}) | "
               f"{d['min']:+.1f} … {d['max']:+.1f} ({d['range']:.1f}) | "
               f"{_x(v['x_trivial'])} | {_x(v['x_hostcalls'])} | {_x(v['x_oauth2'])} | ")
        pp = v["per_process"]
        if pp:
            pd = pp["per_round_diff_us"]
            row += (f"{pp['added_us']:+.1f} | {pd['q1']:+.1f} … {pd['q3']:+.1f} ({pd['iqr']:.1f}) | "
                    f"{pd['min']:+.1f} … {pd['max']:+.1f} ({pd['range']:.1f}) |")
            compared += 1
            narrower_iqr += d["iqr"] < pd["iqr"]
            narrower_range += d["range"] < pd["range"]
            if pd["iqr"] > 0:
                iqr_ratios.append(d["iqr"] / pd["iqr"])
        else:
            row += "— | — | — |"
        lines.append(row)
    lines.append("")
    if compared:
        lines.append(
            f"Spread, paired against per process (same rows, widths in parentheses): the paired "
            f"IQR is narrower in {narrower_iqr} of {compared} rows and the paired range in "
            f"{narrower_range} of {compared}; the median ratio of IQR widths (paired / per "
            f"process) is {statistics.median(iqr_ratios):.2f}." if iqr_ratios else "")
        lines.append("")
    lines += paired_targets(s)
    worst = max(abs(v["diff_us_ticks"]["median"] - v["diff_us"]["median"]) for v in s.values())
    lines += [
        f"The same runs timed in clock ticks (`/proc/PID/stat`, 1/{_clk_tck()} s) give paired "
        f"medians within {worst:.1f} µs of these; the raw runs are in "
        "`bench/results/paired.json`.",
        "",
    ]
    return "\n".join(lines)


def paired_targets(s: dict) -> list[str]:
    """Where the session hot path stands between the floor of its semantics and the sidecar
    it replaces, and the hot-path targets, from the paired medians."""
    med = {k: v["diff_us"]["median"] for k, v in s.items()}
    out = []
    if {"hostcalls", "session", "hop"} <= med.keys():
        out += [
            f"Where the filter stands: the floor of its semantics (2b) adds {med['hostcalls']:+.1f} "
            f"µs, this filter (3) {med['session']:+.1f} µs, one extra Envoy hop (9) "
            f"{med['hop']:+.1f} µs.",
            "",
        ]
    rows = []

    def target(name: str, key: str, ref: str, limit: float) -> None:
        if key in med and ref in med and med[ref] > 0:
            x = med[key] / med[ref]
            rows.append(f"| {name} | {med[key]:+.1f} vs {med[ref]:+.1f} µs = {x:.2f}× | "
                        f"{'yes' if x <= limit else 'no'} |")

    target("Session hot path (3) ≤ 1.1× the floor of its semantics (2b)", "session",
           "hostcalls", 1.1)
    target("Chunked session (4) within 1.2× of (3), each over its own baseline", "chunked",
           "session", 1.2)
    target("Cached bearer JWT (5) within 1.2× of (3), each over its own baseline", "bearer",
           "session", 1.2)
    if rows:
        out += ["| target (paired medians) | this run | met |", "| --- | --- | --- |", *rows, ""]
    return out


def _clk_tck() -> int:
    return os.sysconf("SC_CLK_TCK")


def insert_section(md: Path, heading: str, text: str, before: str = "## Cold paths") -> None:
    """Puts `text` (starting with `## heading`) into `md`: in place of an existing section of
    that heading, else before the section `before`, else at the end."""
    old = md.read_text() if md.is_file() else ""
    lines = old.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == f"## {heading}"), None)
    new = text.rstrip("\n").splitlines() + [""]
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new
    else:
        at = next((i for i, l in enumerate(lines) if l.startswith(before)), None)
        if at is None:
            lines += ([""] if lines and lines[-1] else []) + new
        else:
            lines[at:at] = new
    md.write_text("\n".join(lines).rstrip("\n") + "\n")


def write_paired(out: Path, results: dict, per_process: Path) -> Path:
    latest = None
    if per_process.is_file():
        try:
            latest = json.loads(per_process.read_text())
        except ValueError:
            latest = None
    s = summarize_paired(results, latest)
    results["summary"] = s
    results["per_process_source"] = str(per_process) if latest else None
    raw = out / "results"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "paired.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    md = out / "RESULTS.md"
    insert_section(md, PAIRED_SECTION, paired_markdown(results, s, latest))
    return md

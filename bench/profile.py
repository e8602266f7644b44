#!/usr/bin/env python3
"""`python3 -m bench.profile`: where Envoy's CPU time per request goes, by code region, for
the filter's hot path against the trivial Wasm filter, the host-calls floor and no filter.

The stack is `bench.paired`'s: ONE Envoy (`--concurrency 1`, pinned to core 0) with a
listener per configuration, nginx, the real IdP, logins for real session cookies. Each
configuration gets, in turn, a saturation run of wrk (16 connections, core 1) while
`perf record -e cpu-clock -g -p ENVOY_PID` samples Envoy alone for `--seconds` (perf itself
runs on core 1 too). Envoy's CPU time (schedstat) and the listener's 2xx count are read
around the perf window, so

    µs of CPU per request in category X = (samples in X / all samples) × CPU time / requests

(perf only gives the split; the total comes from the scheduler, like `bench.paired`). The
sample-based total (samples × period / requests) is reported beside it as a check.

Categories, by the sampled instruction (the leaf frame) and, for "in Wasm", by whether a
JIT frame is on the stack above it (V8's JIT code keeps frame pointers, and so does this
Envoy build, so `-g` frame-pointer chains run from the leaf through Wasm back to Envoy's
event loop):

  wasm_jit      leaf in an anonymous executable mapping smaller than 128 MB: V8's Wasm code
                space, i.e. our compiled filter (plus V8's Wasm-to-C wrappers compiled there)
  v8_jit        leaf in a V8 code range (the 512 MB anonymous rwx reservations): builtins
                remapped there (JSEntry, CEntry, ...) -- V8 "short builtin calls"
  envoy_in_wasm leaf in the envoy binary with a JIT frame above: host-call implementations
                (proxy-wasm-cpp-host + Envoy's Context) and V8 runtime called from Wasm
  envoy         leaf in the envoy binary, no JIT frame above: HTTP codec, connection
                manager, router, and the C++ side of calling INTO the filter (context
                creation, V8 API entry) -- the binary is stripped, so this is not split further
  libc_in_wasm / libc   libc.so.6 (memcpy/memset/strlen...), under Wasm or not
  kernel_in_wasm / kernel   [kernel.kallsyms]
  other         vdso (clock_gettime), libm, anything else

The envoy binary is stripped (only ~1500 dynamic symbols: dynamic-module callbacks, lua,
tcmalloc entry points), so Envoy samples are grouped by function START taken from
.eh_frame_hdr (every function with unwind info has an entry), shown as `fn_<hex>`. The top
functions by gate-minus-trivial delta are printed, with the "host-call path" for samples
under Wasm: the first few Envoy functions below the innermost JIT frame.

No V8 perf map: Envoy exposes no V8 flags (--perf-prof / --perf-basic-prof), so the JIT code
is not split by Wasm function; `wasm_jit` is all of the filter's compiled code.

    python3 -m bench.profile [--rounds 3] [--seconds 4] [--freq 2000] [--only a,b]
        [--out DIR]

Writes OUT/profile.md (OUT: bench/results unless told; committed) and OUT/profile.json (every
round's leaf functions and call paths, about 1 MB: not committed), prints markdown tables; perf's files (and /proc/PID/maps snapshots) stay in a temporary directory. Stdlib only. Needs root (or perf_event_paranoid <= 1) and perf.
"""

from __future__ import annotations

import argparse
import bisect
import json
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from . import cold
from .load import SATURATION_CONNECTIONS, BenchError, Case, verify, wrk
from .paired import OneEnvoy, paired_cases
from .procs import OTHER_CORE, ROOT, Procs
from .run import GATE_WASM, HOSTCALLS_WASM, TRIVIAL_WASM

ENVOY_BIN = (Path(__file__).resolve().parent.parent / ".venv" / "lib" / "python3.11"
             / "site-packages" / "envoy" / "_bin" / "envoy")
CATEGORIES = ["wasm_jit", "v8_jit", "envoy_in_wasm", "envoy", "libc_in_wasm", "libc",
              "kernel_in_wasm", "kernel", "other", "glue"]
# "glue": a sample outside Wasm (no JIT frame on its stack) whose stack holds a Wasm-only
# Envoy function: one of the GLUE_DEPTH Envoy functions that, in some filter profile, call
# (directly or a few levels up) into the JIT, and that never appear in any no-filter profile
# -- V8's call entry, proxy-wasm's dispatch, Envoy's Wasm Context. It is taken out of
# envoy/libc/kernel. A lower bound on the C++ cost of calling into a filter: work done
# before the first call into Wasm under a different function (e.g. creating the context) is
# only caught where its stack shares such a function.
GLUE_DEPTH = 8
# Anonymous executable mappings at least this large are V8 code ranges (512 MB on x64);
# smaller ones hold Wasm code (V8's WasmCodeManager reserves its own, smaller spaces).
CODE_RANGE_MIN = 128 << 20
# Seconds of load before perf attaches (connections open, Envoy saturated) and after it stops.
RAMP_SECONDS = 1
TAIL_SECONDS = 1
# How many Envoy functions below the innermost JIT frame name a "host-call path".
PATH_DEPTH = 5
TOP = 12


def say(msg: str) -> None:
    print(f"bench.profile: {msg}", file=sys.stderr, flush=True)


# --- which configurations -------------------------------------------------------------------

def profile_cases(stack: OneEnvoy, sessions: dict) -> dict[str, Case]:
    """The configurations to profile, keyed by a short name, from `bench.paired`'s cases
    (same requests and identity checks). "base" carries john's session cookie, like the
    trivial, host-calls and session rows; the chunked and bearer rows get their own
    filter-less rows with the identical request."""
    out: dict[str, Case] = {}
    for c, b in paired_cases(stack, sessions):
        if c.key == "session":
            out["base"] = b
        if c.key in ("trivial", "hostcalls", "session"):
            out[c.key] = c
        if c.key in ("chunked", "bearer"):
            out[c.key] = c
            out[f"base_{c.key}"] = b
    order = ["base", "trivial", "hostcalls", "session", "bearer", "base_bearer", "chunked",
             "base_chunked"]
    return {k: out[k] for k in order if k in out}


# --- one profiled run -------------------------------------------------------------------------

def exec_maps(pid: int) -> list[tuple[int, int, str]]:
    """(start, end, path) of the process's executable mappings; path "" for anonymous."""
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(None, 5)
        if "x" not in parts[1]:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append((lo, hi, parts[5].strip() if len(parts) > 5 else ""))
    return out


def profiled_run(case: Case, seconds: int, freq: int, data: Path) -> dict:
    """wrk at saturation for RAMP + seconds + TAIL; perf samples Envoy for `seconds` in the
    middle; CPU time and 2xx count are read around the perf window. Fails on anything but
    2xx, like `bench.paired`."""
    verify(case)
    envoy = case.envoy
    result: dict = {}

    def load() -> None:
        try:
            result["wrk"] = wrk(case, RAMP_SECONDS + seconds + TAIL_SECONDS,
                                SATURATION_CONNECTIONS, None)
        except Exception as e:  # reported below, after perf
            result["error"] = e

    t = threading.Thread(target=load)
    t.start()
    time.sleep(RAMP_SECONDS)
    maps = exec_maps(envoy.envoy.pid)
    codes0 = envoy.response_codes()
    ns0 = envoy.cpu_ns()
    perf = subprocess.run(
        ["taskset", "-c", OTHER_CORE, "perf", "record", "-e", "cpu-clock", "-F", str(freq), "-g",
         "-p", str(envoy.envoy.pid), "-o", str(data), "--", "sleep", str(seconds)],
        capture_output=True, text=True)
    ns1 = envoy.cpu_ns()
    codes1 = envoy.response_codes()
    t.join()
    if perf.returncode != 0:
        raise BenchError(f"{case.key}: perf record failed: {perf.stderr[-500:]}")
    if "error" in result:
        raise result["error"]
    delta = {k: codes1[k] - codes0[k] for k in codes0}
    bad = {k: v for k, v in delta.items() if k != "2xx" and v}
    errors = {k: v for k, v in result["wrk"]["errors"].items() if v}
    if bad or errors or delta["2xx"] == 0:
        raise BenchError(f"{case.key}: non-2xx or errors: envoy {bad or 'none'}, "
                         f"wrk {errors or 'none'}, {delta['2xx']} 2xx")
    data.with_suffix(".maps.json").write_text(json.dumps(maps))
    return {"requests": delta["2xx"], "cpu_ns": ns1 - ns0, "maps": maps}


# --- reading perf data ------------------------------------------------------------------------

def function_starts(binary: Path) -> list[int]:
    """Sorted start addresses of the binary's functions, from the binary-search table of
    .eh_frame_hdr (pairs of int32 relative to the section: initial location, FDE address).
    The stripped binary has no symbol table, but every compiled function has unwind info."""
    out = subprocess.run(["readelf", "-SW", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if ".eh_frame_hdr" in line:
            f = line.split("]", 1)[1].split()
            addr, off, size = int(f[2], 16), int(f[3], 16), int(f[4], 16)
            break
    else:
        return []
    with open(binary, "rb") as fh:
        fh.seek(off)
        hdr = fh.read(size)
    version, ptr_enc, count_enc, table_enc = hdr[:4]
    # The usual encodings: eh_frame_ptr pcrel|sdata4, fde_count udata4, table datarel|sdata4.
    if (version, ptr_enc, count_enc, table_enc) != (1, 0x1B, 0x03, 0x3B):
        return []
    (count,) = struct.unpack_from("<I", hdr, 8)
    starts = struct.unpack_from(f"<{2 * count}i", hdr, 12)[0::2]
    return sorted(addr + s for s in starts)


def dynamic_symbols(binary: Path) -> dict[int, str]:
    """The few names the stripped binary keeps (`nm -D`): tcmalloc's malloc/free, lua, the
    dynamic-module callbacks. Used only where a function start is exactly such a symbol."""
    out = subprocess.run(["nm", "-D", "--defined-only", str(binary)], capture_output=True,
                         text=True).stdout
    names: dict[int, str] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "Tt":
            names.setdefault(int(f[0], 16), f[2].split("@")[0])
    return names


class Classifier:
    names: dict[int, str] = {}

    def __init__(self, maps: list[tuple[int, int, str]], starts: list[int]):
        anon = sorted((lo, hi) for lo, hi, path in maps if not path or path.startswith("[anon"))
        self.anon = anon
        self.anon_lo = [lo for lo, _ in anon]
        self.starts = starts

    def jit_kind(self, addr: int) -> str | None:
        i = bisect.bisect_right(self.anon_lo, addr) - 1
        if i < 0 or addr >= self.anon[i][1]:
            return None
        lo, hi = self.anon[i]
        return "v8_jit" if hi - lo >= CODE_RANGE_MIN else "wasm_jit"

    def function(self, addr: int) -> str:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0:
            return f"addr_{addr:x}"
        start = self.starts[i]
        return self.names.get(start, f"fn_{start:x}")


def dso_kind(dso: str) -> str:
    if dso.endswith("/envoy"):
        return "envoy"
    if "kernel.kallsyms" in dso:
        return "kernel"
    if "/libc.so" in dso:
        return "libc"
    if dso.startswith("/tmp/perf-") or dso in ("[unknown]", "//anon", "[JIT]"):
        return "jit"
    return "other"


def parse(data: Path, maps: list, starts: list[int]) -> dict:
    """Samples of one perf file by category, by Envoy leaf function, by host-call path."""
    cls = Classifier(maps, starts)
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,time,period,ip,sym,dso"],
                          capture_output=True, text=True, check=True).stdout
    cats: Counter = Counter()
    samples: list = []                # (category, period, Envoy functions, JIT callers)
    leaf_fn: Counter = Counter()      # Envoy leaf functions, by category
    paths: Counter = Counter()        # host-call paths (under Wasm, leaf not JIT)
    kernel_sym: Counter = Counter()
    total = 0
    complete = 0
    first, last = float("inf"), 0.0
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) < 2:
            continue
        try:
            head = lines[0].split()
            period, stamp = int(head[-1]), float(head[1].rstrip(":"))
        except (IndexError, ValueError):
            continue
        first, last = min(first, stamp), max(last, stamp)
        frames = []
        for line in lines[1:]:
            addr, _, rest = line.strip().partition(" ")
            sym, _, dso = rest.rpartition(" (")
            a = int(addr, 16)
            kind = dso_kind(dso.rstrip(")"))
            if kind == "jit" or (kind == "other" and cls.jit_kind(a)):
                kind = cls.jit_kind(a) or "v8_jit"
            frames.append((a, kind, sym))
        if not frames:
            continue
        total += period
        if frames[-1][2] in ("start_thread", "clone3", "clone", "_start") or \
                frames[-1][1] == "kernel":
            complete += period
        leaf_addr, leaf, leaf_sym = frames[0]
        jit_above = [i for i, f in enumerate(frames) if f[1] in ("wasm_jit", "v8_jit")]
        if leaf in ("wasm_jit", "v8_jit"):
            cat = leaf
        elif leaf in ("envoy", "libc", "kernel"):
            cat = f"{leaf}_in_wasm" if jit_above else leaf
        else:
            cat = "other"
        cats[cat] += period
        # For the "glue" post-pass: the Envoy functions on the stack, and those calling into
        # the JIT (rootward of the outermost JIT frame).
        fns = frozenset(cls.function(a) for a, k, _ in frames if k == "envoy")
        entry = ()
        if jit_above:
            entry = tuple(cls.function(a) for a, k, _ in frames[jit_above[-1] + 1:]
                          if k == "envoy")[:GLUE_DEPTH]
        samples.append((cat, period, fns, entry))
        if leaf == "envoy":
            leaf_fn[(cat, cls.function(leaf_addr))] += period
        elif leaf == "kernel":
            kernel_sym[leaf_sym] += period
        if jit_above and leaf not in ("wasm_jit", "v8_jit"):
            # Envoy frames between the leaf and the innermost JIT frame, outermost first.
            below = [f for f in frames[:jit_above[0]] if f[1] == "envoy"][::-1]
            path = " > ".join(cls.function(a) for a, _, _ in below[:PATH_DEPTH]) or "(none)"
            if leaf != "envoy":
                path += f" > [{leaf}]"
            paths[path] += period
    return {"total_period": total, "window_s": max(0.0, last - first), "complete_chain_share": complete / total if total else 0,
            "categories": dict(cats), "samples": samples,
            "leaf_functions": {f"{c}|{f}": v for (c, f), v in leaf_fn.items()},
            "paths": dict(paths), "kernel_symbols": dict(kernel_sym.most_common(40))}


def glue_functions(profiles: dict[str, list[dict]]) -> set[str]:
    """Envoy functions that call into the JIT in some filter profile and are never on a
    stack in a no-filter profile (configurations named base*)."""
    entry, seen_base = set(), set()
    for k, profs in profiles.items():
        for prof in profs:
            for _, _, fns, callers in prof["samples"]:
                if k.startswith("base"):
                    seen_base |= fns
                else:
                    entry.update(callers)
    return entry - seen_base


def recategorise(prof: dict, glue: set[str]) -> None:
    """Moves samples outside Wasm whose stack holds a glue function into "glue"."""
    cats: Counter = Counter()
    for cat, period, fns, _ in prof["samples"]:
        if cat in ("envoy", "libc", "kernel", "other") and fns & glue:
            cat = "glue"
        cats[cat] += period
    prof["categories"] = dict(cats)


def per_request(run: dict, prof: dict) -> dict:
    """µs of CPU per request by category: perf's split × schedstat's total."""
    cpu_us_per_req = run["cpu_ns"] / 1e3 / run["requests"]
    total = prof["total_period"] or 1
    out = {c: prof["categories"].get(c, 0) / total * cpu_us_per_req for c in CATEGORIES}
    out["total"] = cpu_us_per_req
    out["sampled_total"] = prof["total_period"] / 1e3 / run["requests"]
    out["in_wasm"] = sum(out[c] for c in ("wasm_jit", "v8_jit", "envoy_in_wasm",
                                          "libc_in_wasm", "kernel_in_wasm"))
    return out


def scaled(counter: dict, run: dict, prof: dict) -> dict:
    """A counter of periods as µs of CPU per request (same scaling as `per_request`)."""
    f = run["cpu_ns"] / 1e3 / run["requests"] / (prof["total_period"] or 1)
    return {k: v * f for k, v in counter.items()}


# --- summary ----------------------------------------------------------------------------------

COLUMNS = ["total", "wasm_jit", "v8_jit", "envoy_in_wasm", "libc_in_wasm", "kernel_in_wasm",
           "glue", "envoy", "libc", "kernel", "other", "in_wasm", "sampled_total"]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def table(rows: dict[str, dict[str, float]], title: str) -> str:
    head = "| " + title + " | " + " | ".join(COLUMNS) + " |"
    sep = "|---" * (len(COLUMNS) + 1) + "|"
    body = [f"| {name} | " + " | ".join(f"{r.get(c, 0):.2f}" for c in COLUMNS) + " |"
            for name, r in rows.items()]
    return "\n".join([head, sep, *body])


def summarise(results: dict, configs: list[str]) -> str:
    rounds = results["rounds"]
    med = {k: {c: median([r[k]["us"][c] for r in rounds if k in r]) for c in COLUMNS}
           for k in configs}
    out = ["## Envoy CPU µs per request by category (median over rounds)", "",
           table(med, "config"), ""]
    # Paired within a round (the runs of one round are a few seconds apart), then median.
    pairs = [(a, b) for a, b in (("trivial", "base"), ("hostcalls", "base"), ("session", "base"),
                                 ("hostcalls", "trivial"), ("session", "trivial"),
                                 ("session", "hostcalls"), ("bearer", "trivial"),
                                 ("bearer", "base_bearer"), ("chunked", "base_chunked"),
                                 ("chunked", "trivial"))
             if a in configs and b in configs]
    diffs = {f"{a} − {b}": {c: median([r[a]["us"][c] - r[b]["us"][c] for r in rounds])
                            for c in COLUMNS} for a, b in pairs}
    out += ["## Differences (median over rounds of the per-round difference), µs/request", "",
            table(diffs, "difference"), ""]
    out += ["## Requests and perf checks (median)", "",
            "| config | requests in window | req/s | samples/s | Envoy CPU use (perf) | "
            "complete call chains |",
            "|---|---|---|---|---|---|"]
    for k in configs:
        rs = [r[k] for r in rounds if k in r]
        out.append(f"| {k} | {median([r['requests'] for r in rs]):.0f} | "
                   f"{median([r['requests'] / r['seconds'] for r in rs]):.0f} | "
                   f"{median([r['samples'] / r['seconds'] for r in rs]):.0f} | "
                   f"{median([r['perf_utilisation'] for r in rs]):.0%} | "
                   f"{median([r['complete_chain_share'] for r in rs]):.1%} |")
    out.append("")
    for a, b in [p for p in (("session", "trivial"), ("trivial", "base"), ("hostcalls", "trivial"),
                             ("session", "hostcalls")) if p[0] in configs and p[1] in configs]:
        out += hotspot_tables(rounds, a, b)
    return "\n".join(out)


def hotspot_tables(rounds: list[dict], a: str, b: str) -> list[str]:
    out = []
    for key, title in (("leaf_functions", "Envoy leaf functions (category|function start)"),
                       ("paths", "host-call paths under Wasm (Envoy functions below the JIT, "
                                 "outermost first)"),
                       ("kernel_symbols", "kernel leaf symbols")):
        names = set()
        for r in rounds:
            names |= set(r[a][key]) | set(r[b][key])
        rows = []
        for n in names:
            da = median([r[a][key].get(n, 0) for r in rounds])
            db = median([r[b][key].get(n, 0) for r in rounds])
            d = median([r[a][key].get(n, 0) - r[b][key].get(n, 0) for r in rounds])
            rows.append((d, da, db, n))
        rows.sort(key=lambda x: -abs(x[0]))
        out += [f"### {a} vs {b}: {title}, top {TOP} by |Δ| (µs/request, medians)", "",
                f"| {a} | {b} | Δ | what |", "|---|---|---|---|"]
        out += [f"| {da:.2f} | {db:.2f} | {d:+.2f} | `{n}` |" for d, da, db, n in rows[:TOP]]
        out.append("")
    return out


# --- main -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=4, help="perf window per run (whole seconds)")
    p.add_argument("--freq", type=int, default=2000, help="perf sampling frequency (Hz)")
    p.add_argument("--only", help="comma-separated subset of: base,trivial,hostcalls,session,"
                                  "bearer,base_bearer,chunked,base_chunked")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                   help="where profile.json and profile.md go (perf's own files stay in a "
                        "temporary directory)")
    args = p.parse_args(argv)
    for f in (GATE_WASM, TRIVIAL_WASM, HOSTCALLS_WASM):
        if not f.is_file():
            print(f"bench.profile: {f} missing; run `just build bench-trivial`", file=sys.stderr)
            return 2
    if shutil.which("perf") is None:
        print("bench.profile: perf not found", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wop-profile-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return run(args, procs, Path(tmp))
        except (BenchError, RuntimeError, subprocess.CalledProcessError) as e:
            procs.report_failure("bench.profile", e)
            return 1
        finally:
            procs.stop()


def run(args, procs: Procs, tmp: Path) -> int:
    wasm = {}
    for key, f in (("gate", GATE_WASM), ("trivial", TRIVIAL_WASM), ("hostcalls", HOSTCALLS_WASM)):
        copy = tmp / f.name
        shutil.copyfile(f, copy)
        wasm[key] = copy
    say("starting nginx, the IdP and one Envoy (a listener per configuration)")
    stack = OneEnvoy(procs, wasm["gate"], wasm["trivial"], wasm["hostcalls"])
    say("logging in")
    sessions = cold.cookie_sizes(stack)
    todo = profile_cases(stack, sessions)
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only.split(",")}
    configs = list(todo)
    starts = function_starts(ENVOY_BIN)
    Classifier.names = dynamic_symbols(ENVOY_BIN)
    say(f"{len(starts)} function starts from .eh_frame_hdr; envoy pid {stack.envoy.pid}")

    say("warm-up: 1s per configuration")
    for c in todo.values():
        verify(c)
        wrk(c, 1, SATURATION_CONNECTIONS, None)

    rounds = []
    profs: dict[str, list] = {}
    for r in range(args.rounds):
        # Rotate the order each round so no configuration always follows the same one.
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        say(f"round {r + 1}/{args.rounds}: {', '.join(order)}")
        rec = {}
        for k in order:
            data = tmp / f"{k}-r{r + 1}.data"
            m = profiled_run(todo[k], args.seconds, args.freq, data)
            prof = parse(data, m["maps"], starts)
            profs.setdefault(k, []).append((rec, m, prof))
            rec[k] = {"requests": m["requests"], "cpu_ns": m["cpu_ns"], "seconds": args.seconds,
                      "samples": prof["total_period"] / (1e9 / args.freq),
                      # Sampled CPU time over the perf window (first to last sample): Envoy's
                      # CPU utilisation as perf saw it, a check on the schedstat total.
                      "perf_window_s": prof["window_s"],
                      "perf_utilisation": prof["total_period"] / 1e9 / (prof["window_s"] or 1),
                      "schedstat_utilisation": m["cpu_ns"] / 1e9 / args.seconds,
                      "complete_chain_share": prof["complete_chain_share"],
                      "us": per_request(m, prof),
                      "leaf_functions": scaled(prof["leaf_functions"], m, prof),
                      "paths": scaled(prof["paths"], m, prof),
                      "kernel_symbols": scaled(prof["kernel_symbols"], m, prof)}
            say(f"  {k}: {m['requests']} requests, {rec[k]['us']['total']:.1f} µs/req, "
                f"wasm_jit {rec[k]['us']['wasm_jit']:.1f}, in_wasm {rec[k]['us']['in_wasm']:.1f}")
        rounds.append(rec)

    # The glue post-pass needs every profile (the no-filter ones define what is NOT glue).
    glue = glue_functions({k: [p for _, _, p in v] for k, v in profs.items()})
    say(f"{len(glue)} Wasm-only Envoy functions calling into the JIT (glue): "
        f"{', '.join(sorted(glue)[:20])}")
    for k, v in profs.items():
        for rec, m, prof in v:
            recategorise(prof, glue)
            rec[k]["us"] = per_request(m, prof)

    results = {"settings": {"rounds": args.rounds, "seconds": args.seconds, "freq": args.freq,
                            "connections": SATURATION_CONNECTIONS},
               "configs": {k: {"title": todo[k].title, "listener": todo[k].envoy.name}
                           for k in configs},
               "glue_functions": sorted(glue), "rounds": rounds}
    (args.out / "profile.json").write_text(json.dumps(results, indent=1))
    text = summarise(results, configs)
    (args.out / "profile.md").write_text(text + "\n")
    print(text)
    say(f"wrote {args.out / 'profile.json'} and {args.out / 'profile.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Where the filter's Wasm time goes on the hot path, seen through Node.js's V8.

Envoy's V8 cannot be profiled at the Wasm function level (no V8 flags, stripped binary),
so this runs the same code paths (examples/hot_path.rs: the header map read with
`routing::wire`, the coordinator's handling and the map written back) compiled to wasm32-wasip1
under Node.js (V8 too) with `--cpu-prof`, which names Wasm functions from the module's name
section, and natively for comparison.

    python3 bench/v8_profile.py                    # build, time, profile all cases
    python3 bench/v8_profile.py --cases chunked --iters 100000 --no-build

Steps:
  1. Build. The crate's dev-dependencies (tokio with `net`) do not build for wasm32, so
     `cargo build --target wasm32-wasip1 --example hot_path` fails; the example is built as
     the binary of a shim package (WORK/shim) that depends on this crate by path and has
     only the example's own dependencies, with the project's release profile but names kept
     (strip=false, no debug info). Native from the same shim, so both are one build.
     Also a `wasm-opt -Oz` variant with the shipped build's flags (justfile `build`) but
     `--debuginfo` instead of `--strip-debug`, which would drop the name section.
  2. Time: ns/iteration natively and under `node --no-liftoff` (Envoy's V8 runs TurboFan
     only), the whole request and each step alone (`--phases`); best of --repeat runs.
  3. Profile: `node --no-liftoff --cpu-prof` per case, then self time by function, by
     crate/module, inclusive time, and who calls the hottest functions.

Everything goes to WORK (default /tmp/v8prof); cargo uses WORK/target.
"""

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ["session", "chunked", "bearer"]

# The shipped build's wasm-opt flags (justfile `build`), keeping the name section.
WASM_OPT = ["wasm-opt", "-Oz", "--one-caller-inline-max-function-size", "200",
            "--enable-bulk-memory", "--enable-sign-ext",
            "--enable-mutable-globals", "--enable-nontrapping-float-to-int", "--debuginfo"]

SHIM_TOML = """\
[package]
name = "hot-path-shim"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "hot_path"
path = "{root}/examples/hot_path.rs"

[dependencies]
wasm-oauth2-proxy = {{ path = "{root}" }}
base64 = "0.22"
serde_json = "1"
p256 = {{ version = "0.13", default-features = false, features = ["ecdsa", "std"] }}

# The project's release profile (Cargo.toml).
[profile.release]
opt-level = "z"
lto = true
codegen-units = 1
panic = "abort"
strip = true
"""

# WASI preview1 command runner. The module also exports the filter's proxy-wasm entry
# points (the crate's #[no_mangle] functions), so it imports the host's `env.proxy_*`
# calls: stubbed, the example never makes them. `_initialize` is left out of what
# wasi.start sees, which refuses modules that export it.
RUNNER_MJS = """\
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';
const [wasmPath, ...args] = process.argv.slice(2);
const module = new WebAssembly.Module(readFileSync(wasmPath));
const wasi = new WASI({ version: 'preview1', args: ['hot_path', ...args], env: {},
                        preopens: {}, returnOnExit: true });
const imports = { wasi_snapshot_preview1: wasi.wasiImport, env: {} };
for (const i of WebAssembly.Module.imports(module)) {
  if (i.module === 'env') imports.env[i.name] = () => { throw new Error(`host call ${i.name}`); };
}
const instance = new WebAssembly.Instance(module, imports);
const { memory, _start } = instance.exports;
process.exitCode = wasi.start({ exports: { memory, _start } });
"""


def run(cmd, env=None, cwd=None, capture=True):
    print("+ " + " ".join(str(c) for c in cmd), file=sys.stderr)
    r = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, text=True,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr or ''}")
    return r.stdout or ""


# ------------------------------------------------------------------------------------------
# 1. Build


def build(work):
    shim = work / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "Cargo.toml").write_text(SHIM_TOML.format(root=ROOT))
    # The project's pinned versions and toolchain.
    shutil.copy(ROOT / "Cargo.lock", shim / "Cargo.lock")
    shutil.copy(ROOT / "rust-toolchain.toml", shim / "rust-toolchain.toml")
    env = dict(os.environ, CARGO_TARGET_DIR=str(work / "target"),
               CARGO_PROFILE_RELEASE_STRIP="false", CARGO_PROFILE_RELEASE_DEBUG="false")
    run(["cargo", "build", "--release", "--target", "wasm32-wasip1"], env=env, cwd=shim,
        capture=False)
    run(["cargo", "build", "--release"], env=env, cwd=shim, capture=False)
    raw = work / "target/wasm32-wasip1/release/hot_path.wasm"
    run(WASM_OPT + [raw, "-o", work / "hot_path.opt.wasm"])


def artifacts(work):
    return {
        "native": work / "target/release/hot_path",
        "raw": work / "target/wasm32-wasip1/release/hot_path.wasm",
        "opt": work / "hot_path.opt.wasm",
    }


# ------------------------------------------------------------------------------------------
# 2. Time


def parse_line(line):
    return {k: v for k, v in (kv.split("=", 1) for kv in line.split() if "=" in kv)}


def node_cmd(work, wasm, args, liftoff, extra=()):
    flags = [] if liftoff else ["--no-liftoff"]
    return ["node", "--no-warnings", *flags, *extra, work / "runner.mjs", wasm, *args]


def timings(work, cases, iters, repeat, liftoff):
    """{(target, case): {field: best ns}} for native, raw Wasm and wasm-opt'd Wasm."""
    a = artifacts(work)
    best = {}
    for target in ["native", "raw", "opt"]:
        if not a[target].exists():
            continue
        for case in cases:
            args = [case, str(iters), "--phases"]
            for _ in range(repeat):
                cmd = [a[target], *args] if target == "native" else \
                    node_cmd(work, a[target], args, liftoff)
                fields = parse_line(run(cmd).strip().splitlines()[-1])
                cur = best.setdefault((target, case), {})
                for k in ["ns_per_iter", "read_ns", "decide_ns"]:
                    v = float(fields[k])
                    cur[k] = min(cur.get(k, v), v)
                for k in ["wire_bytes", "cookie_bytes", "out_bytes"]:
                    cur[k] = fields[k]
    return best


def print_timings(best, cases):
    print("\n## ns per iteration (best of runs)\n")
    print("| case | cookie B | step | native | wasm (node) | wasm -Oz (node) | wasm/native |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for case in cases:
        n = best.get(("native", case), {})
        r = best.get(("raw", case), {})
        o = best.get(("opt", case), {})
        for k, label in [("ns_per_iter", "**whole request**"), ("read_ns", "read map"),
                         ("decide_ns", "coordinator: decide, map written back")]:
            ratio = f"{r[k] / n[k]:.1f}x" if k in r and k in n else ""
            print(f"| {case} | {r.get('cookie_bytes', '')} | {label} | {n.get(k, 0):.0f} | "
                  f"{r.get(k, 0):.0f} | {o.get(k, 0):.0f} | {ratio} |")


# ------------------------------------------------------------------------------------------
# 3. Profile


def demangle(names):
    """Rust (legacy and v0) and C names, via binutils' c++filt; hashes dropped."""
    names = list(names)
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), text=True,
                             capture_output=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        out = names
    if len(out) != len(names):
        out = names
    clean = {}
    for raw, d in zip(names, out):
        d = re.sub(r"\[[0-9a-f]{16}\]", "", d)       # v0 crate disambiguators
        d = re.sub(r"::h[0-9a-f]{16}$", "", d)        # legacy hashes
        d = re.sub(r"\.\d+$", "", d)                  # LLVM clone suffixes
        clean[raw] = d
    return clean


def group_of(name):
    """The crate/module a function belongs to, for the grouped table."""
    if name.startswith("("):
        return name                                   # (program), (garbage collector)...
    if re.fullmatch(r"mem(cpy|move|set|cmp)|__memcpy_fwd|__memmove|bcmp", name):
        return "libc " + name
    if re.fullmatch(r"dl\w+|malloc|free|realloc|calloc|aligned_alloc|"
                    r"__libc_\w+|internal_memalign|posix_memalign", name):
        return "dlmalloc (wasi-libc malloc/free)"
    if re.fullmatch(r"__rust_\w+|__rdl_\w+|__rg_\w+", name):
        return "alloc glue (__rust_alloc...)"
    if re.match(r"<\[u8\]>|<\[T\]>", name):
        return "core::slice"
    if re.match(r"<(str|char)>", name):
        return "core::" + name[1:].split(">")[0]
    path = name
    # `<A as B>::f` -> A, or B when A is a bare type parameter (`<T as ...>`).
    m = re.match(r"<+(?:&(?:mut )?)?([\w:]+)(?:<[^ ]*>)? as ([\w:]+)", path)
    if m:
        path = m.group(2) if re.fullmatch(r"[A-Z]", m.group(1)) else m.group(1)
    parts = [p for p in re.split(r"::", re.sub(r"<.*", "", path)) if p]
    if not parts:
        return name
    depth = 3 if parts[0] == "wasm_oauth2_proxy" else 2
    if parts[0] == "hot_path":
        return "hot_path (example: the host's copy, loop)"
    return "::".join(parts[:depth])


def load_profile(path):
    prof = json.loads(Path(path).read_text())
    nodes = {n["id"]: n for n in prof["nodes"]}
    parent = {}
    for n in prof["nodes"]:
        for c in n.get("children", []):
            parent[c] = n["id"]
    # Self time per node from the sample stream (microseconds between samples).
    node_us = collections.Counter()
    for nid, dt in zip(prof["samples"], prof["timeDeltas"]):
        node_us[nid] += max(dt, 0)
    raw_names = {n["callFrame"]["functionName"] or "(anonymous)" for n in prof["nodes"]}
    names = demangle(raw_names)

    def fname(nid):
        cf = nodes[nid]["callFrame"]
        name = names.get(cf["functionName"] or "(anonymous)", cf["functionName"])
        if not cf["url"].startswith("wasm://") and not name.startswith("("):
            name = f"[js] {name}"
        return name

    return nodes, parent, node_us, fname


def stack(nid, parent, fname):
    out = []
    while nid in parent:
        out.append(fname(nid))
        nid = parent[nid]
    return out  # leaf first


def summarize(path, top, title, focus):
    """Tables of one profile, counting only samples with `focus` on the stack (the timed
    per-request work, not the setup: sealing, key generation, compilation)."""
    nodes, parent, node_us, fname = load_profile(path)
    all_us = sum(node_us.values()) or 1
    self_us = collections.Counter()
    incl_us = collections.Counter()
    callers = collections.defaultdict(collections.Counter)
    wasm_us = total = 0
    for nid, us in node_us.items():
        st = stack(nid, parent, fname)
        if not st or (focus and focus not in st):
            continue
        if focus:
            st = st[:st.index(focus) + 1]
        total += us
        self_us[st[0]] += us
        if nodes[nid]["callFrame"]["url"].startswith("wasm://"):
            wasm_us += us
        for f in set(st):
            incl_us[f] += us
        callers[st[0]][" <- ".join(st[1:4])] += us
    groups = collections.Counter()
    for f, us in self_us.items():
        groups[group_of(f)] += us

    total = total or 1
    pct = lambda us: f"{100 * us / total:.1f}%"  # noqa: E731
    print(f"\n## {title}\n")
    print(f"{all_us / 1e6:.2f} s sampled, {100 * total / all_us:.0f}% under `{focus}` "
          f"(100% below), {pct(wasm_us)} of that in Wasm code. Profile: {path}\n")
    print(f"### Self time, top {top}\n")
    print("| # | self | function |\n|---:|---:|---|")
    for i, (f, us) in enumerate(self_us.most_common(top), 1):
        print(f"| {i} | {pct(us)} | `{f[:150]}` |")
    print("\n### Self time by crate / module\n")
    print("| self | group |\n|---:|---|")
    for g, us in groups.most_common(20):
        print(f"| {pct(us)} | {g} |")
    print("\n### Inclusive time (function and what it calls), top 30\n")
    print("| incl | function |\n|---:|---|")
    for f, us in incl_us.most_common(30):
        print(f"| {pct(us)} | `{f[:150]}` |")
    print("\n### Who calls the hottest functions (3 frames up)\n")
    for f, _ in self_us.most_common(6):
        if f.startswith("("):
            continue
        print(f"- `{f[:100]}`")
        for st, us in callers[f].most_common(3):
            print(f"  - {pct(us)} <- `{st[:300]}`")


def profile(work, cases, iters, interval, liftoff, variant):
    wasm = artifacts(work)[variant]
    out = {}
    for case in cases:
        name = f"{case}.{variant}.cpuprofile"
        extra = ["--cpu-prof", "--cpu-prof-dir", work / "prof", "--cpu-prof-name", name,
                 "--cpu-prof-interval", str(interval)]
        line = run(node_cmd(work, wasm, [case, str(iters)], liftoff, extra)).strip()
        print(f"profiled: {line}", file=sys.stderr)
        out[case] = work / "prof" / name
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/v8prof"))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--iters", type=int, default=200_000, help="timed iterations")
    ap.add_argument("--profile-iters", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="timing runs, best kept")
    ap.add_argument("--interval", type=int, default=50, help="sampling interval, us")
    ap.add_argument("--liftoff", action="store_true",
                    help="let node start in Liftoff and tier up (Envoy: TurboFan only)")
    ap.add_argument("--variants", default="raw",
                    help="what to profile: raw (cargo output), opt (wasm-opt -Oz), both")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--focus", default="hot_path::Gate::request",
                    help="count only samples with this function on the stack ('' for all)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-time", action="store_true")
    a = ap.parse_args()
    cases = a.cases.split(",")
    a.work.mkdir(parents=True, exist_ok=True)
    (a.work / "runner.mjs").write_text(RUNNER_MJS)
    if not a.no_build:
        build(a.work)
    print(f"# Hot path under V8 (node {run(['node', '--version']).strip()}, "
          f"{'Liftoff+TurboFan' if a.liftoff else '--no-liftoff: TurboFan only'})")
    if not a.no_time:
        print_timings(timings(a.work, cases, a.iters, a.repeat, a.liftoff), cases)
    variants = ["raw", "opt"] if a.variants == "both" else a.variants.split(",")
    for variant in variants:
        profs = profile(a.work, cases, a.profile_iters, a.interval, a.liftoff, variant)
        for case, path in profs.items():
            summarize(path, a.top, f"Profile: {case}, {variant} wasm", a.focus)


if __name__ == "__main__":
    main()

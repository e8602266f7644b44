#!/usr/bin/env python3
"""`just size`: where the optimized module's bytes go, by function and by crate.

Reads a build of the optimized module that keeps its name section (`just size` makes one:
the same cargo build and wasm-opt flags as `just build`, only with the names kept; its code
section is within a few hundred bytes of the shipped module's) with twiggy (`cargo install
twiggy`), and writes bench/results/size-profile.md and .json:

  - the shipped module's sections (code, data, the rest) and the raw module's size
  - the top functions (and data segments) by size
  - totals by crate: the first path of each function's demangled name (`<T as Trait>::f`
    counts for T's crate, a generic instance for the crate of the generic, `drop_in_place<T>`
    for T's crate, `core`/`alloc`/`std` for the standard library, primitives for `core`)
  - the generic functions with the most monomorphised copies (twiggy monos)
  - with `--before NAMED.wasm`, the same totals for another build beside them
  - what V8 makes of each function (Node.js's V8, TurboFan only and eager, as Envoy
    compiles): its machine code, and the peak memory of the compiler's zone for it. The
    largest zones, not the code bytes, decide most of what the compile leaves resident in
    Envoy's tcmalloc (bench/results/size-profile.md, "Cuts tried")

Anything in the existing report below the line `<!-- kept -->` is carried over unchanged
(the hand-kept history of the cuts).

    python3 -m bench.size --named build/size/wasm_oauth2_proxy.wasm [--before OTHER.wasm]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

from .procs import ROOT
from .rss import wasm_facts

SHIPPED = ROOT / "build" / "wasm_oauth2_proxy.wasm"
RAW = ROOT / "target" / "wasm32-wasip1" / "release" / "wasm_oauth2_proxy.wasm"
KEPT = "<!-- kept -->"
STD = {"core", "alloc", "std", "compiler_builtins"}
PRIMITIVES = {"char", "str", "bool", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16",
              "i32", "i64", "i128", "isize", "f32", "f64"}


def twiggy(*args: str) -> list[dict]:
    out = subprocess.run(["twiggy", *args, "--format", "json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def clean(name: str) -> str:
    """A demangled name without its hash suffix or crate disambiguators."""
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return re.sub(r"\[[0-9a-f]{16}\]", "", name)


def is_code(name: str) -> bool:
    return not (name.startswith('"') or name.startswith("data segment")
                or re.match(r"^(type|elem|import|export|table|global|memory|code)\[", name))


def crate_of(name: str) -> str:
    n = clean(name)
    # wasm-opt's merged look-alike functions keep the name of one of them.
    n = re.sub(r"^byn\$mgfn-shared\$", "", n)
    m = re.match(r"^core::ptr::drop_in_place<(.*)>$", n)
    if m:
        n = m.group(1)
    while True:
        stripped = re.sub(r"^([<&*(\[ ]+|mut |dyn |const )", "", n)
        if stripped == n:
            break
        n = stripped
    m = re.match(r"[A-Za-z_$][A-Za-z0-9_$.]*", n)
    if not m:
        return "?"
    first, rest = m.group(0), n[m.end():]
    if rest.startswith("::"):
        return first
    if first in PRIMITIVES:
        return "core"
    if rest.startswith(" as "):
        # `<D as digest::Digest>::finalize`: a generic parameter; the trait's crate.
        t = re.match(r" as ([A-Za-z_][A-Za-z0-9_]*)::", rest)
        return t.group(1) if t else "?"
    # A bare symbol: wasi-libc, dlmalloc, compiler-rt.
    return "(C: wasi-libc, dlmalloc, compiler-rt)"


def function_names(path: Path) -> dict[int, str]:
    """Function index -> name, from the module's name section."""
    data = path.read_bytes()

    def leb(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    out: dict[int, str] = {}
    i = 8
    while i < len(data):
        sid = data[i]
        size, body = leb(i + 1)
        if sid == 0:
            length, k = leb(body)
            if data[k:k + length] == b"name":
                k += length
                while k < body + size:
                    sub = data[k]
                    sub_size, k2 = leb(k + 1)
                    if sub == 1:
                        count, q = leb(k2)
                        for _ in range(count):
                            index, q = leb(q)
                            length, q = leb(q)
                            out[index] = data[q:q + length].decode("utf-8", "replace")
                            q += length
                    k = k2 + sub_size
        i = body + size
    return out


V8_SCRIPT = """
const bytes = require('fs').readFileSync(process.argv[process.argv.length - 1]);
WebAssembly.compile(bytes).then(() => {}, e => { console.error(e); process.exit(1); });
"""
V8_LINE = re.compile(r"#(\d+) using TurboFan, took \d+ ms and (\d+) / (\d+) max/total bytes; "
                     r"bodysize (\d+) codesize (\d+)")


def v8_profile(named: Path) -> list[dict] | None:
    """Per function: Wasm body bytes, x64 machine code bytes and the TurboFan zone's peak,
    from Node.js's V8 compiling the module eagerly with TurboFan only. None without node."""
    try:
        out = subprocess.run(
            ["node", "--no-liftoff", "--no-wasm-lazy-compilation",
             "--trace-wasm-compilation-times", "-e", V8_SCRIPT, str(named)],
            capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = function_names(named)
    rows = []
    for line in (out.stdout + out.stderr).splitlines():
        m = V8_LINE.search(line)
        if m:
            index = int(m.group(1))
            rows.append({"name": clean(demangle(names.get(index, f"#{index}"))),
                         "zone_peak": int(m.group(2)), "zone_total": int(m.group(3)),
                         "body": int(m.group(4)), "code": int(m.group(5))})
    return rows or None


def demangle(name: str) -> str:
    """The name section holds mangled names; twiggy's names are demangled. Enough of
    Rust's legacy mangling (`_ZN...E`) to name the crate and the path."""
    prefix = ""
    if name.startswith("byn$mgfn-shared$"):
        prefix, name = "byn$mgfn-shared$", name[len("byn$mgfn-shared$"):]
    if name.startswith("_R"):
        # v0 mangling (the standard library's): the identifiers after the crate's hash.
        tail = re.split(r"C[sa-zA-Z0-9]*?_(?=\d)", name, maxsplit=1)[-1]
        out = []
        while True:
            n = re.match(r"\d+", tail)
            if not n:
                break
            length, tail = int(n.group(0)), tail[n.end():]
            out.append(tail[:length])
            tail = tail[length:]
        return prefix + "::".join(out) if out else prefix + name
    m = re.match(r"^_ZN((?:\d+[^\d].*?)+)E$", name)
    if not m:
        return prefix + name
    rest, parts = m.group(1), []
    while rest:
        n = re.match(r"^(\d+)", rest)
        if not n:
            break
        length = int(n.group(1))
        start = len(n.group(1))
        parts.append(rest[start:start + length])
        rest = rest[start + length:]
    text = "::".join(parts)
    for code, ch in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$RF$", "&"),
                     ("$BP$", "*"), ("$C$", ","), ("$u7b$", "{"), ("$u7d$", "}"),
                     ("$u5b$", "["), ("$u5d$", "]"), ("..", "::")):
        text = text.replace(code, ch)
    return prefix + re.sub(r"^_", "", text)


def profile(named: Path) -> dict:
    items = twiggy("top", "-n", "1000000", str(named))
    code = [i for i in items if is_code(i["name"])]
    data = [i for i in items if i["name"].startswith("data segment")]
    crates: dict[str, dict] = collections.defaultdict(lambda: {"bytes": 0, "functions": 0})
    for i in code:
        c = crates[crate_of(i["name"])]
        c["bytes"] += i["shallow_size"]
        c["functions"] += 1
    monos = twiggy("monos", "-m", "15", "-n", "0", str(named))
    v8 = v8_profile(named)
    v8_crates: dict[str, dict] = collections.defaultdict(lambda: {"code": 0, "zone_total": 0})
    for f in v8 or []:
        c = v8_crates[crate_of(f["name"])]
        c["code"] += f["code"]
        c["zone_total"] += f["zone_total"]
    return {
        "v8": v8,
        "v8_crates": dict(sorted(v8_crates.items(), key=lambda kv: -kv[1]["code"])),
        "named": str(named),
        "functions": [{"name": clean(i["name"]), "bytes": i["shallow_size"]} for i in code],
        "data_segments": [{"name": i["name"], "bytes": i["shallow_size"]} for i in data],
        "crates": dict(sorted(crates.items(), key=lambda kv: -kv[1]["bytes"])),
        "monos": [{"generic": clean(m["generic"]), "total": m["total_size"],
                   "bloat": m["approximate_monomorphization_bloat_bytes"],
                   "copies": None} for m in monos
                  if not m["generic"].startswith(("...", "Σ"))],
    }


def copies(named: Path, generics: list[str]) -> dict[str, int]:
    """How many monomorphised copies each generic has (twiggy monos --all-monos)."""
    out = {}
    for m in twiggy("monos", "-a", str(named)):
        g = clean(m["generic"])
        if g in generics:
            out[g] = len(m["monomorphizations"])
    return out


def markdown(p: dict, shipped: dict, raw: int | None, before: dict | None, kept: str) -> str:
    code_total = sum(f["bytes"] for f in p["functions"])
    lines = [
        "# Size profile of the optimized module",
        "",
        "Regenerate with `just size` (twiggy over a build that keeps the name section; "
        "`just size BEFORE=path/to/other.named.wasm` adds a second build's crate totals).",
        "",
        f"- **Shipped module** `{Path(shipped['path']).name}`: {shipped['bytes']} bytes "
        f"(code section {shipped['code']}, data section {shipped['data']}, the rest "
        f"{shipped['bytes'] - shipped['code'] - shipped['data']}); initial memory "
        f"{shipped['memory_pages']} pages",
        f"- **Raw module** (cargo's, before wasm-opt): {raw} bytes" if raw else "",
        f"- **Profiled build** `{p['named']}`: {len(p['functions'])} functions, "
        f"{code_total} bytes of function bodies, {len(p['data_segments'])} data segments "
        f"({sum(d['bytes'] for d in p['data_segments'])} bytes)",
        "",
        "## Top functions",
        "",
        "| bytes | % of code | function |",
        "| --- | --- | --- |",
    ]
    for f in sorted(p["functions"], key=lambda f: -f["bytes"])[:40]:
        lines.append(f"| {f['bytes']} | {100 * f['bytes'] / code_total:.1f} | `{f['name'][:150]}` |")
    lines += ["", "## Totals by crate (function bodies)", ""]
    bc = before["crates"] if before else None
    if bc:
        lines += ["| crate | functions | bytes | % of code | before | change |",
                  "| --- | --- | --- | --- | --- | --- |"]
    else:
        lines += ["| crate | functions | bytes | % of code |", "| --- | --- | --- | --- |"]
    names = list(p["crates"])
    if bc:
        names += [c for c in bc if c not in p["crates"]]
    for c in names:
        v = p["crates"].get(c, {"bytes": 0, "functions": 0})
        row = f"| {c} | {v['functions']} | {v['bytes']} | {100 * v['bytes'] / code_total:.1f} |"
        if bc is not None:
            b = bc.get(c, {"bytes": 0})["bytes"]
            row += f" {b} | {v['bytes'] - b:+d} |"
        lines.append(row)
    if bc is not None:
        btotal = sum(f["bytes"] for f in before["functions"])
        lines.append(f"| **all** | {len(p['functions'])} | {code_total} | 100 | {btotal} | "
                     f"{code_total - btotal:+d} |")
    lines += [
        "",
        "## Generic functions with the most copies",
        "",
        "| generic | copies | bytes in all | beyond the largest copy |",
        "| --- | --- | --- | --- |",
    ]
    for m in p["monos"]:
        lines.append(f"| `{m['generic'][:140]}` | {m['copies']} | {m['total']} | {m['bloat']} |")
    v8 = p.get("v8")
    if v8:
        code = sum(f["code"] for f in v8)
        lines += [
            "",
            "## What V8 makes of it (Node.js's V8, TurboFan only, eager)",
            "",
            f"{len(v8)} functions compiled to {code} bytes of x64 code "
            f"({code / max(1, sum(f['body'] for f in v8)):.2f} per Wasm byte); the compiler's "
            f"zone peaked at {max(f['zone_peak'] for f in v8) / 2**20:.1f} MiB for one function. "
            f"Functions whose zone peaks over 1 MiB: "
            f"{sum(1 for f in v8 if f['zone_peak'] > 2**20)}. Envoy's V8 is another version; "
            "the sizes are indicative, the order is what matters.",
            "",
            "| zone peak KiB | Wasm bytes | x64 bytes | function |",
            "| --- | --- | --- | --- |",
        ]
        for f in sorted(v8, key=lambda f: -f["zone_peak"])[:25]:
            lines.append(f"| {f['zone_peak'] // 1024} | {f['body']} | {f['code']} | "
                         f"`{f['name'][:140]}` |")
        lines += ["", "| crate | x64 bytes | zone bytes, all functions |", "| --- | --- | --- |"]
        for c, v in list(p["v8_crates"].items())[:20]:
            lines.append(f"| {c} | {v['code']} | {v['zone_total']} |")
    lines += ["", "## Largest data segments", "", "| bytes | segment |", "| --- | --- |"]
    for d in p["data_segments"][:10]:
        lines.append(f"| {d['bytes']} | {d['name']} |")
    lines += ["", KEPT, kept.rstrip("\n"), ""]
    return "\n".join(line for line in lines if line is not None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--named", type=Path, required=True, help="optimized module with names")
    ap.add_argument("--shipped", type=Path, default=SHIPPED)
    ap.add_argument("--raw", type=Path, default=RAW)
    ap.add_argument("--before", type=Path, help="another named build to compare with")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "size-profile.md")
    args = ap.parse_args(argv)
    p = profile(args.named)
    counts = copies(args.named, [m["generic"] for m in p["monos"]])
    for m in p["monos"]:
        m["copies"] = counts.get(m["generic"])
    before = profile(args.before) if args.before else None
    if before:
        before.pop("v8", None)
    kept = ""
    if args.out.is_file():
        old = args.out.read_text()
        if KEPT in old:
            kept = old.split(KEPT, 1)[1].lstrip("\n")
    shipped = wasm_facts(args.shipped)
    raw = args.raw.stat().st_size if args.raw.is_file() else None
    text = markdown(p, shipped, raw, before, kept)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    kept_profile = {**p, "functions": sorted(p["functions"], key=lambda f: -f["bytes"])[:300],
                    "v8": sorted(p["v8"] or [], key=lambda f: -f["zone_peak"])[:300],
                    "function_count": len(p["functions"]),
                    "function_bytes": sum(f["bytes"] for f in p["functions"])}
    args.out.with_suffix(".json").write_text(json.dumps(
        {"shipped": shipped, "raw": raw, "profile": kept_profile,
         "before": None if before is None else {"named": before["named"],
                                                "crates": before["crates"]}},
        indent=1) + "\n")
    code_total = sum(f["bytes"] for f in p["functions"])
    print(f"size: {shipped['bytes']} bytes shipped, {code_total} bytes of functions; "
          f"top crates: " + ", ".join(f"{c} {v['bytes']}" for c, v in
                                      list(p["crates"].items())[:8]))
    print(f"size: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

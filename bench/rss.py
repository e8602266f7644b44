#!/usr/bin/env python3
"""`just bench-rss`: what the filter costs Envoy's memory over the trivial Wasm filter.

One nginx upstream and the local IdP (core 1) stay up; Envoys (`--concurrency 1`, core 0,
the same bootstrap but for the Wasm module and its configuration) are started one at a time:
per round, one with the trivial filter (build/bench_trivial.wasm) and one with ours (order
alternating between rounds). Each is read twice: idle (`--settle` seconds after it listens)
and after the same warm-up (a login through the Envoy, then `--warmup` rounds of the same six
requests: a browser's, an API client's, the session cookie, a bearer ID token, a skipped
route, /oauth2/sign_in; through the trivial filter the same requests, which nginx answers).
The result is the median over `--starts` rounds of "ours − trivial" in VmRSS, with min–max.

Each reading is also split, from /proc/PID/smaps and Envoy's /memory (tcmalloc's counters):
  - jit: anonymous executable mappings (V8's compiled Wasm code, one copy shared by the VMs)
  - linear: the Wasm linear memories (the read-write head of each VM's >= 4 GiB reservation)
  - malloc live: tcmalloc's `allocated` (V8's module metadata, wire bytes, Envoy's own state)
  - malloc cached: resident but free in tcmalloc (thread caches, free spans not yet returned;
    most of it what V8's compiler freed)
  - rest: everything else (Envoy's binary, stacks, ...)

Writes bench/results/rss.md and rss.json.

    python3 -m bench.rss [--starts 5] [--warmup 50] [--wasm PATH] [--before-wasm PATH]
                         [--compare LABEL=[trivial:]PATH ...]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import envoy_configs as ec
from . import report, tokens
from .browser import Browser, login
from .procs import ROOT, Envoy, Procs, free_ports, start_idp, start_nginx

WASM = ROOT / "build" / "wasm_oauth2_proxy.wasm"
TRIVIAL = ROOT / "build" / "bench_trivial.wasm"
CLIENT_ID = "demo-app"
COOKIE = "_oauth2_proxy"
MIB = 1024  # /proc figures are in KiB
RESERVATION = 4 << 30  # V8 reserves >= 4 GiB (plus guards) of address space per Wasm memory
PADDED = "trivial+padding"
PARTS = ("jit", "linear", "malloc_live", "malloc_cached", "rest")


def gate_config(idp_port: int, redirect: str) -> str:
    return json.dumps({
        "provider": "oidc",
        "oidc_issuer_url": f"http://127.0.0.1:{idp_port}",
        "idp_cluster": "idp",
        "client_id": CLIENT_ID,
        "client_secret_env": "OAUTH2_CLIENT_SECRET",
        "cookie_secret_env": "OAUTH2_COOKIE_SECRET",
        "redirect_url": redirect,
        "email_domains": ["*"],
        "cookie_secure": False,
        "skip_auth_routes": ["GET=^/public/"],
        "skip_jwt_bearer_tokens": True,
    })


def wasm_facts(path: Path) -> dict:
    """Size, digest, and the module's sections: code bytes, data bytes, initial memory."""
    data = Path(path).read_bytes()
    facts = {"path": str(path), "bytes": len(data),
             "sha256": hashlib.sha256(data).hexdigest(), "code": 0, "data": 0,
             "memory_pages": None}

    def leb(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    i = 8
    while i < len(data):
        sid = data[i]
        size, i = leb(i + 1)
        if sid == 10:
            facts["code"] = size
        elif sid == 11:
            facts["data"] = size
        elif sid == 5:
            _, j = leb(i)  # count (one memory)
            _, j = leb(j)  # limits flags
            facts["memory_pages"], _ = leb(j)
        i += size
    return facts


def padded(trivial: Path, kib: int, out: Path) -> Path:
    """The trivial module with a custom section of `kib` KiB of random bytes appended: module
    bytes that V8 keeps and copies but never compiles."""
    def leb(n: int) -> bytes:
        b = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            b.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(b)

    name = b"bench-rss-padding"
    body = leb(len(name)) + name + os.urandom(kib * 1024)
    out.write_bytes(trivial.read_bytes() + b"\x00" + leb(len(body)) + body)
    return out


def smaps(pid: int) -> list[dict]:
    out: list[dict] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append({"lo": lo, "hi": hi, "perm": parts[1],
                        "path": parts[5] if len(parts) > 5 else "", "rss": 0})
        elif parts and parts[0] == "Rss:" and out:
            out[-1]["rss"] = int(parts[1])
    return out


def tcmalloc(admin: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/memory", timeout=5) as r:
        return {k: int(v) for k, v in json.loads(r.read()).items()}


def reading(e: Envoy) -> dict:
    """VmRSS and its parts, in KiB."""
    maps = smaps(e.pid)
    rss = e.rss_kb()
    anon = [m for m in maps if not m["path"]]
    jit = sum(m["rss"] for m in anon if "x" in m["perm"])
    starts = {m["lo"] for m in anon if m["perm"].startswith("---") and m["hi"] - m["lo"] >= RESERVATION}
    linear = [m for m in anon if m["perm"].startswith("rw") and m["hi"] in starts]
    mem = tcmalloc(e.admin)
    live = mem["allocated"] // 1024
    cached = max(0, (mem["heap_size"] - mem["pageheap_unmapped"] - mem["allocated"]) // 1024)
    return {
        "rss": rss, "jit": jit, "linear": sum(m["rss"] for m in linear),
        "linear_mapped": sum(m["hi"] - m["lo"] for m in linear) // 1024,
        "vms": len(starts), "malloc_live": live, "malloc_cached": cached,
        "rest": rss - jit - sum(m["rss"] for m in linear) - live - cached,
        "tcmalloc": mem,
    }


def get(port: int, path: str, headers: dict[str, str]) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Bench:
    def __init__(self, procs: Procs, args):
        self.procs, self.args = procs, args
        ports = free_ports(4)
        self.app_port, self.idp_port, self.port, self.admin = ports
        self.redirect = f"http://127.0.0.1:{self.port}/oauth2/callback"
        self.secret = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self.env = {"OAUTH2_CLIENT_SECRET": self.secret,
                    "OAUTH2_COOKIE_SECRET":
                        base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")}
        start_nginx(procs, self.app_port)
        start_idp(procs, self.idp_port, [self.redirect], self.secret)
        self.id_token = tokens.authorization_code(self.idp_port, CLIENT_ID, self.secret,
                                                  self.redirect, "john", "john")["id_token"]
        self.n = 0

    def start(self, kind: str, wasm: Path) -> Envoy:
        self.n += 1
        if kind == "gate":
            filt = ec.gate_filter(str(wasm), gate_config(self.idp_port, self.redirect))
        else:
            filt = ec.trivial_filter(str(wasm))
        boot = ec.bootstrap(self.port, self.admin, self.app_port, self.idp_port, filt)
        e = Envoy(self.procs, f"{kind}-{self.n}", boot, self.port, self.admin,
                  env=self.env if kind == "gate" else None)
        e.wait_ready()
        return e

    def stop(self, e: Envoy) -> None:
        self.procs.children = [(n, p) for n, p in self.procs.children if p is not e.proc]
        e.proc.terminate()
        e.proc.wait(timeout=10)
        # The next Envoy binds the same ports.
        time.sleep(0.3)

    def warm(self, e: Envoy, kind: str) -> dict[str, int]:
        """The same requests through either filter; returns the statuses seen."""
        seen: dict[str, int] = {}
        cookie = ""
        if kind == "gate":
            b = Browser()
            try:
                login(b, f"http://127.0.0.1:{e.port}/", e.port, "john", "john")
            finally:
                b.close()
            cookie = b.jars.get(e.port, {}).get(COOKIE, "")
            if not cookie:
                raise RuntimeError(f"login through {e.name} left no {COOKIE} cookie")
        else:
            # The login's hops that reach Envoy, as the gate's login makes them.
            for path in ("/", "/oauth2/callback?code=x&state=y", "/"):
                get(e.port, path, {"Accept": "text/html"})
            cookie = "x" * 200
        html = {"Accept": "text/html"}
        requests = [
            ("/", html),
            ("/api", {"Accept": "application/json"}),
            ("/", {"Cookie": f"{COOKIE}={cookie}"}),
            ("/", {"Authorization": f"Bearer {self.id_token}"}),
            ("/public/x", {}),
            ("/oauth2/sign_in", html),
        ]
        for _ in range(self.args.warmup):
            for path, headers in requests:
                status = str(get(e.port, path, headers))
                seen[status] = seen.get(status, 0) + 1
        if kind == "gate":
            # Both credentials must have reached nginx, not a redirect or a 401.
            for headers in ({"Cookie": f"{COOKIE}={cookie}"},
                            {"Authorization": f"Bearer {self.id_token}"}):
                if get(e.port, "/", headers) != 200:
                    raise RuntimeError(f"{e.name}: a credential was refused after warm-up")
        elif set(seen) != {"200"}:
            raise RuntimeError(f"{e.name}: the trivial filter answered {seen}")
        return seen

    def measure(self, kind: str, wasm: Path) -> dict:
        e = self.start(kind, wasm)
        try:
            time.sleep(self.args.settle)
            idle = reading(e)
            statuses = self.warm(e, kind)
            time.sleep(self.args.settle)
            warm = reading(e)
            if e.proc.poll() is not None:
                raise RuntimeError(f"{e.name} exited with {e.proc.returncode}")
        finally:
            self.stop(e)
        return {"idle": idle, "warm": warm, "statuses": statuses}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(res: dict) -> dict:
    """Per variant other than the trivial one, per round "variant − trivial" of every part."""
    out = {}
    triv = res["runs"]["trivial"]
    for name, runs in res["runs"].items():
        if name == "trivial":
            continue
        out[name] = {}
        for when in ("idle", "warm"):
            out[name][when] = {
                part: spread([(r[when][part] - t[when][part]) / MIB for r, t in zip(runs, triv)])
                for part in ("rss", *PARTS)
            }
        out[name]["absolute"] = {
            when: spread([r[when]["rss"] / MIB for r in runs]) for when in ("idle", "warm")}
        out[name]["linear_growth"] = spread(
            [(r["warm"]["linear"] - r["idle"]["linear"]) / MIB for r in runs])
    out["trivial"] = {"absolute": {when: spread([r[when]["rss"] / MIB for r in triv])
                                   for when in ("idle", "warm")}}
    return out


def _r(s: dict, fmt: str = "+.1f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}} … {s['max']:{fmt}})"


def markdown(res: dict) -> str:
    m, st, s = res["machine"], res["settings"], res["summary"]
    w = res["wasm"]
    lines = [
        "# Envoy RSS: the filter over the trivial Wasm filter",
        "",
        f"- **Command:** `{res['command']}` (took {res['seconds']:.0f} s)",
        f"- **Date:** {m['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; load average at "
        f"start {' '.join(m['loadavg_at_start'])}",
        f"- **Envoy:** {m['envoy']}, `--concurrency 1`, pinned to core 0, one at a time; "
        "nginx and the IdP on core 1",
        f"- **Rounds:** {st['starts']} (each: one Envoy with each module, order alternating), "
        f"read {st['settle']} s after it listens (idle) and {st['settle']} s after the warm-up "
        f"(a login through the gate, then {st['warmup']} × 6 requests)",
        "",
        "| module | bytes | code section | data section | initial memory |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, f in w.items():
        mem = "" if f["memory_pages"] is None else f"{f['memory_pages']} pages ({f['memory_pages'] * 64} KiB)"
        lines.append(f"| {name} `{Path(f['path']).name}` | {f['bytes']} | {f['code']} | "
                     f"{f['data']} | {mem} |")
    lines += [
        "",
        "Difference to the trivial filter, MB (2^20 bytes), median (min … max) of the rounds' "
        "paired differences:",
        "",
        "| module | when | **VmRSS** | jit code | linear memory | malloc live | malloc cached | rest |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in s.items():
        if name == "trivial":
            continue
        for when in ("idle", "warm"):
            d = v[when]
            lines.append(f"| {name} | {'after warm-up' if when == 'warm' else 'idle'} | "
                         f"**{_r(d['rss'])}** | " + " | ".join(_r(d[p]) for p in PARTS) + " |")
    lines += ["", "Absolute VmRSS, MB:", "",
              "| module | idle | after warm-up |", "| --- | --- | --- |"]
    for name, v in s.items():
        a = v["absolute"]
        lines.append(f"| {name} | {_r(a['idle'], '.1f')} | {_r(a['warm'], '.1f')} |")
    lines += [""]
    per_byte = None
    if PADDED in s:
        pad_bytes = w[PADDED]["bytes"] - w["trivial"]["bytes"]
        per_byte = s[PADDED]["warm"]["rss"]["median"] * 2**20 / pad_bytes
        lines.append(
            f"- **Module bytes as such:** the trivial filter padded with {pad_bytes} bytes of "
            f"custom section (never compiled) costs {s[PADDED]['warm']['rss']['median']:+.1f} "
            f"MB: {per_byte:.1f} bytes of RSS per byte of module (the copies of the module "
            "that Envoy and V8 keep, and transient ones left in tcmalloc).")
    for name, v in s.items():
        if name in ("trivial", PADDED):
            continue
        d = v["warm"]
        extra_bytes = w[name]["bytes"] - w["trivial"]["bytes"]
        extra_code = w[name]["code"] - w["trivial"]["code"]
        total, linear = d["rss"]["median"], d["linear"]["median"]
        as_bytes = 0.0 if per_byte is None else extra_bytes * per_byte / 2**20
        code = total - linear - as_bytes
        lines.append(
            f"- **{name}:** {total:+.1f} MB after warm-up over the trivial filter: linear "
            f"memory {linear:+.2f} MB (the VMs' heaps, {res['runs'][name][0]['warm']['vms']} "
            f"VMs; grown {v['linear_growth']['median']:+.2f} MB by the warm-up), module bytes "
            f"as such ~{as_bytes:+.1f} MB ({extra_bytes} bytes more than the trivial module), "
            f"and the compiled code ~{code:+.1f} MB (jit {d['jit']['median']:+.1f} MB, the rest "
            "V8's metadata of that code and its compiler's leftovers in tcmalloc): "
            f"{code * 2**20 / max(1, extra_code):.1f} bytes of RSS per byte of code section "
            f"({extra_code} bytes more).")
    lines += [
        "",
        "How the parts are read: jit = anonymous executable mappings; linear memory = the "
        "read-write head of each VM's >= 4 GiB reservation in /proc/PID/smaps; malloc live = "
        "tcmalloc's `allocated` from Envoy's /memory; malloc cached = its heap_size − "
        "pageheap_unmapped − allocated (free bytes still resident: thread caches, free spans "
        "not yet released); rest = VmRSS − the others.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--starts", type=int, default=5, help="rounds (one start of each module)")
    p.add_argument("--warmup", type=int, default=50, help="rounds of the six requests")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds before each reading (Envoy releases free memory every 1 s)")
    p.add_argument("--wasm", type=Path, default=WASM)
    p.add_argument("--trivial", type=Path, default=TRIVIAL)
    p.add_argument("--before-wasm", type=Path, help="another build of the filter, same rounds")
    p.add_argument("--label", default="gate", help="name of --wasm in the report")
    p.add_argument("--before-label", default="before", help="name of --before-wasm")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH",
                   help="more builds of the filter in the same rounds (repeatable); "
                   "LABEL=trivial:PATH configures PATH as the trivial filter")
    p.add_argument("--pad-kib", type=int, default=1024,
                   help="also run the trivial filter padded with a custom section of this many "
                   "KiB, to price module bytes that are not code (0: not)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rss.md")
    p.add_argument("--command", default="just bench-rss", help="recorded in the report")
    args = p.parse_args(argv)
    variants = {"trivial": ("trivial", args.trivial), args.label: ("gate", args.wasm)}
    if args.before_wasm:
        variants[args.before_label] = ("gate", args.before_wasm)
    for item in args.compare:
        label, _, path = item.partition("=")
        kind = "gate"
        if path.startswith("trivial:"):
            # A module configured as the trivial filter is (e.g. the trivial filter padded
            # with a custom section: what module bytes cost that V8 does not compile).
            kind, path = "trivial", path[len("trivial:"):]
        variants[label] = (kind, Path(path))
    for name, (_, path) in variants.items():
        if not path.is_file():
            print(f"rss: {path} missing (`just build` and `just bench-trivial` make them)",
                  file=sys.stderr)
            return 2
    started = time.time()
    res = {"command": args.command, "machine": report.machine(),
           "settings": {"starts": args.starts, "warmup": args.warmup, "settle": args.settle},
           "wasm": {n: wasm_facts(path) for n, (_, path) in variants.items()},
           "runs": {n: [] for n in variants}}
    with tempfile.TemporaryDirectory(prefix="wop-rss-") as tmp:
        if args.pad_kib > 0:
            pad = padded(args.trivial, args.pad_kib, Path(tmp) / "trivial-padded.wasm")
            variants[PADDED] = ("trivial", pad)
            res["wasm"][PADDED] = wasm_facts(pad)
            res["runs"][PADDED] = []
        procs = Procs(Path(tmp))
        try:
            say("starting nginx and the IdP")
            b = Bench(procs, args)
            order = list(variants)
            for i in range(args.starts):
                for name in (order if i % 2 == 0 else order[::-1]):
                    kind, path = variants[name]
                    r = b.measure(kind, path)
                    res["runs"][name].append(r)
                    say(f"round {i + 1}: {name}: idle {r['idle']['rss'] / MIB:.1f} MB, after "
                        f"warm-up {r['warm']['rss'] / MIB:.1f} MB (jit {r['warm']['jit'] / MIB:.1f}, "
                        f"linear {r['warm']['linear'] / MIB:.2f}, malloc live "
                        f"{r['warm']['malloc_live'] / MIB:.1f}, cached "
                        f"{r['warm']['malloc_cached'] / MIB:.1f})")
        except (RuntimeError, OSError, tokens.TokenError) as e:
            procs.report_failure("rss", e)
            return 1
        finally:
            procs.stop()
    res["seconds"] = time.time() - started
    res["summary"] = summarize(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(res)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    print()
    print(text)
    return 0


def say(msg: str) -> None:
    print(f"rss: {msg}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

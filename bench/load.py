"""Load runs with wrk on core 1 against one Envoy on core 0, with the checks that make a
number trustworthy: the credential reaches the upstream before the run, and nothing but
2xx came back during it (from wrk's own count and from Envoy's response-code stats,
which also catch redirects that wrk would count as successes). Stdlib only."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request

from .procs import CLK_TCK, OTHER_CORE, ROOT, Envoy

WRK_SCRIPT = ROOT / "bench" / "wrk" / "report.lua"
SATURATION_CONNECTIONS = 16
PACED_CONNECTIONS = 2
PACE_MS = 1


class BenchError(RuntimeError):
    pass


class Case:
    """One measured configuration: which Envoy, which request headers, what proves the
    upstream saw an authenticated request."""

    def __init__(self, key: str, title: str, envoy: Envoy, headers: dict[str, str],
                 expect: dict[str, str | tuple[str, ...]] | None = None, path: str = "/",
                 baseline: str = "base"):
        self.key = key
        self.title = title
        self.envoy = envoy
        self.headers = headers
        self.expect = expect or {}
        self.path = path
        # The case whose Envoy CPU this one's "added" is measured against: the same request
        # through Envoy without any filter.
        self.baseline = baseline

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.envoy.port}{self.path}"


def verify(case: Case) -> None:
    """One request with the credential must be answered 200 by nginx itself (not a redirect,
    not a local reply of the auth filter), with the identity the upstream should see."""
    req = urllib.request.Request(case.url, headers=case.headers)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=5) as r:
            status, headers = r.status, r.headers
    except urllib.error.HTTPError as e:
        status, headers = e.code, e.headers
    if status != 200 or headers.get("x-upstream") != "nginx":
        raise BenchError(f"{case.key}: credential check got {status} "
                         f"(x-upstream={headers.get('x-upstream')!r}), not 200 from the upstream")
    for name, want in case.expect.items():
        got = headers.get(name, "")
        # "*": any non-empty value; a tuple: any one of these values.
        if want == "*" and got or got == want or isinstance(want, tuple) and got in want:
            continue
        raise BenchError(f"{case.key}: upstream saw {name}={got!r}, expected {want!r}")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wrk(case: Case, seconds: float, connections: int, pace_ms: int | None) -> dict:
    argv = ["taskset", "-c", OTHER_CORE, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "-s", str(WRK_SCRIPT)]
    for k, v in case.headers.items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(case.url)
    env = dict(os.environ)
    env.pop("WRK_PACE_MS", None)
    if pace_ms is not None:
        env["WRK_PACE_MS"] = str(pace_ms)
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 30)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(f"{case.key}: wrk failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return json.loads(line[len("WRK_JSON "):])


def measure(case: Case, seconds: float, paced: bool) -> dict:
    """One run: Envoy CPU time and response codes read around it, everything checked."""
    verify(case)
    codes0 = case.envoy.response_codes()
    ticks0 = case.envoy.cpu_ticks()
    if paced:
        r = wrk(case, seconds, PACED_CONNECTIONS, PACE_MS)
    else:
        r = wrk(case, seconds, SATURATION_CONNECTIONS, None)
    ticks1 = case.envoy.cpu_ticks()
    codes1 = case.envoy.response_codes()
    delta = {k: codes1[k] - codes0[k] for k in codes0}
    bad = {k: v for k, v in delta.items() if k != "2xx" and v}
    errors = {k: v for k, v in r["errors"].items() if v}
    if bad or errors or r["requests"] == 0:
        raise BenchError(f"{case.key}: non-2xx responses or errors during the run: "
                         f"envoy {bad or 'none'}, wrk {errors or 'none'}, {r['requests']} requests")
    secs = r["duration_us"] / 1e6
    cpu_s = (ticks1 - ticks0) / CLK_TCK
    return {
        "requests": r["requests"],
        "seconds": secs,
        "rps": r["requests"] / secs,
        "envoy_cpu_us_per_req": cpu_s * 1e6 / r["requests"],
        "envoy_cpu_utilisation": cpu_s / secs,
        "latency_us": r["latency_us"],
        "envoy_2xx": delta["2xx"],
    }

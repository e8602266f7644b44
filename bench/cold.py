"""Cold paths against the real IdP on loopback: the first request's redirect to the IdP, the
full login callback (code exchange callout, ID-token verification, sealing), and the size
of the session cookie for a few token sets. Stdlib only."""

from __future__ import annotations

import http.client
import re
import statistics
import time
import urllib.request

from .browser import Browser, login
from .load import BenchError
from .stack import Stack


def percentiles(samples_ms: list[float]) -> dict:
    s = sorted(samples_ms)

    def pct(p: float) -> float:
        return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]

    return {"n": len(s), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "min_ms": s[0], "max_ms": s[-1], "mean_ms": statistics.fmean(s)}


def _timed_gets(port: int, n: int, headers: dict[str, str], want: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            conn.request("GET", "/some/page", headers=headers)
            resp = conn.getresponse()
            resp.read()
            out.append((time.perf_counter() - start) * 1e3)
            if resp.status != want:
                raise BenchError(f"expected {want} from port {port}, got {resp.status}")
    finally:
        conn.close()
    return out


def first_request(stack: Stack, n: int) -> dict:
    """A browser without a session gets a 302 to the IdP; the same client's plain request
    through the filter-less Envoy is the reference, so the difference is the filter's work."""
    html = {"Accept": "text/html"}
    _timed_gets(stack.envoys["gate"].port, 50, html, 302)
    _timed_gets(stack.envoys["base"].port, 50, html, 200)
    redirect, base = [], []
    for _ in range(n // 50):
        redirect += _timed_gets(stack.envoys["gate"].port, 50, html, 302)
        base += _timed_gets(stack.envoys["base"].port, 50, html, 200)
    r, b = percentiles(redirect), percentiles(base)
    return {"redirect": r, "baseline": b, "added_p50_ms": r["p50_ms"] - b["p50_ms"]}


def callbacks(stack: Stack, n: int) -> dict:
    """`n` complete logins as john; each callback hop is timed on its own. The IdP's login
    session is kept between logins (as a returning browser's would be), which changes
    the IdP's pages, not the callback."""
    gate = stack.envoys["gate"]
    b = Browser()
    samples = []
    try:
        for _ in range(n):
            b.jars.pop(gate.port, None)
            cb, _ = login(b, stack.url("gate", "/"), gate.port, "john", "john")
            if cb.status != 302 or not any(c.startswith("_oauth2_proxy") for c in cb.set_cookies()):
                raise BenchError(f"callback answered {cb.status} without a session cookie")
            samples.append(cb.seconds * 1e3)
    finally:
        b.close()
    return {**percentiles(samples), "idp_token_endpoint": idp_time(stack)}


def idp_time(stack: Stack) -> dict:
    """Envoy's own view of the IdP's answer times (the token callouts dominate)."""
    url = f"http://127.0.0.1:{stack.envoys['gate'].admin}/stats?filter=^cluster\\.idp\\.upstream_rq_time$"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for q in ("P50", "P90", "P99"):
        m = re.search(rf"{q}\([^,]*,([0-9.]+)\)", text)
        if m:
            out[f"{q.lower()}_ms"] = float(m.group(1))
    return out


def cookie_sizes(stack: Stack) -> dict:
    """Bytes of session cookie a browser sends back (`name=value` pairs joined by `; `)."""
    gate = stack.envoys["gate"]
    out = {}
    for user, what in (("john", "typical (1 group)"), ("groups50", "50 groups"),
                       ("bigjohn", "150 groups")):
        b = Browser()
        try:
            login(b, stack.url("gate", "/"), gate.port, user, user)
        finally:
            b.close()
        jar = {k: v for k, v in b.jars.get(gate.port, {}).items() if k.startswith("_oauth2_proxy")}
        out[user] = {
            "what": what,
            "chunks": len(jar),
            "bytes": len("; ".join(f"{k}={v}" for k, v in jar.items())),
            "cookie": "; ".join(f"{k}={v}" for k, v in sorted(jar.items())),
        }
    return out

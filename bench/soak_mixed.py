#!/usr/bin/env python3
"""`just soak MINUTES`: the filter living through mixed traffic and an IdP outage, over time.

One Envoy (`--concurrency 2`) with the filter in front of the demo app (demo/app.js), the
local IdP (idp/server.js) behind a proxy of this script's own that can take it away (its port
refuses connections; requests it is answering finish first, as an orchestrator drains an IdP
it stops). Bounded, local traffic from a few client threads, mixing:

  login       a browser logs in through the IdP's login form (a new session in the pool)
  session     a session from the pool: API client (JSON) or browser, keeping every cookie the
              gate sets, as a browser does; access tokens live 60 s (10 s in runs shorter than
              10 minutes) and refresh tokens rotate, so refreshes happen all the time
  bearer      a real ID token as `Authorization: Bearer` (skip_jwt_bearer_tokens)
  public      a `skip_auth_routes` route, no credential
  forged      a random session cookie (API client: 401; browser: sent to log in)
  anonymous   an API client without a credential (401), and /ping
  sign_out    a session leaves the pool through /oauth2/sign_out

and, in the middle, one outage of the IdP: 2 minutes (a quarter of the run, at least 10 s, in
runs shorter than 10 minutes). What is expected of every answer, by kind:

  session     200; a 503 only while the IdP is down or within 10 s after it is back (a
              session whose access token is due and cannot be refreshed; a failed refresh is
              tried again after 2 s); a 401 only for a session another thread signed out
  login       the gate's 302 to the IdP and a session (while the IdP is down the browser
              cannot reach it, or the gate cannot redeem the code and answers the callback
              with its 502 page: counted, not a failure)
  bearer, public, ping  200      forged  401 / 302      anonymous  401      sign_out  302

Anything else is unexpected, and so is every 5xx not listed. The run fails (exit 1) on an
unexpected answer, on a refresh token presented twice (the IdP's reuse detection, which would
revoke a user's grant), on a Wasm VM reloaded or lost, or when Envoy's RSS grows more than
32 MB after the warm-up (both workers' caches full, plus 8 MB) or, in runs of 30 minutes or
more, rises more than 8 MB/h over the second half. It reports every status class per phase and kind, p50/p99 latency per
phase, Envoy's RSS slope, the IdP's counts; writes <results>/soak.md and soak.json and, with
--reliability FILE, the section between `<!-- soak:begin -->` and `<!-- soak:end -->` there.

    python3 -m bench.soak_mixed --minutes 60 [--results bench/results] [--reliability RELIABILITY.md]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import http.server
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from . import envoy_configs as ec
from .browser import Browser, login
from .procs import ROOT, free_ports, wait_port

WASM = ROOT / "build" / "wasm_oauth2_proxy.wasm"
ENVOY = ROOT / ".venv" / "bin" / "envoy"
CLIENT_ID = "demo-app"
COOKIE = "_oauth2_proxy"
JOHN = "john@example.com"
CONCURRENCY = 2
# A session whose refresh failed is refreshed again after this (src/refresh.rs RETRY_SECS);
# after the IdP is back, a session due for refresh may still get a 503 this long, plus the
# time until its next request.
RECOVERY_S = 10.0
# Envoy's access log of every 5xx answer, in the run's log directory.
FIVE_XX_LOG = "envoy-5xx.log"
# What the filter may legitimately hold: both workers' session and bearer caches full
# (2 x (8 + 4) MiB, src/gate/vocab.rs), plus the 8 MB `just soak-memory` allows for the rest.
RSS_BOUND_MB = 32
# Flat, in runs long enough to tell: less than this many MB an hour over the second half
# (the caches fill to their entry bounds with a few MB of cookies at most).
SLOPE_BOUND_MB_H = 8
POOL = 48
# Logins and sign-outs are rare next to requests on sessions, so that sessions live long
# enough to be refreshed again and again.
WEIGHTS = {
    "session_api": 45, "session_browser": 12, "bearer": 12, "public": 10, "forged": 10,
    "anonymous": 6, "login": 1, "sign_out": 1, "ping": 3,
}


def say(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the IdP's outage


class QuietServer(http.server.ThreadingHTTPServer):
    """Connections cut while the IdP goes down are expected, not worth a traceback."""

    def handle_error(self, request, client_address):
        pass


class IdpProxy:
    """HTTP proxy in front of the IdP on a fixed port. `down()` closes the port (new
    connections are refused), lets requests being answered finish and closes idle
    connections; `up()` listens again."""

    def __init__(self, port: int, backend: int):
        self.port, self.backend = port, backend
        self.is_down = False
        self.lock = threading.Lock()
        self.handlers: set = set()
        self.server = None
        self.forwarded = 0

    def _handler(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            busy = False

            def setup(self):
                super().setup()
                with proxy.lock:
                    proxy.handlers.add(self)

            def finish(self):
                with proxy.lock:
                    proxy.handlers.discard(self)
                super().finish()

            def log_message(self, *args):
                pass

            def forward(self):
                self.busy = True
                try:
                    if proxy.is_down:
                        self.close_connection = True
                        return
                    n = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(n) if n else None
                    hop = {"connection", "keep-alive", "content-length", "transfer-encoding"}
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.backend, timeout=30)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in hop]
                    finally:
                        conn.close()
                    proxy.forwarded += 1
                    self.send_response(resp.status)
                    for k, v in out:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    if proxy.is_down:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    self.busy = False

            do_GET = do_POST = do_HEAD = forward

        return Handler

    def up(self) -> None:
        self.is_down = False
        for _ in range(100):
            try:
                server = QuietServer(("127.0.0.1", self.port), self._handler())
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the IdP proxy cannot listen on {self.port} again")
        server.daemon_threads = True
        self.server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def down(self) -> None:
        self.is_down = True
        server, self.server = self.server, None
        if server:
            server.shutdown()
            server.server_close()
        with self.lock:
            idle = [h for h in self.handlers if not h.busy]
        for h in idle:
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ------------------------------------------------------------------ processes


class Stack:
    def __init__(self, workdir: Path, ttl: int):
        self.workdir = workdir
        self.children: list[subprocess.Popen] = []
        (self.app_port, self.idp_port, self.proxy_port, self.port,
         self.admin) = free_ports(5)
        self.secret = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self.issuer = f"http://127.0.0.1:{self.proxy_port}"
        redirect = f"http://127.0.0.1:{self.port}/oauth2/callback"
        self.start("app", ["node", "demo/app.js"], {"APP_PORT": str(self.app_port)})
        wait_port(self.app_port, self.children[-1], "app")
        self.start("idp", ["node", "idp/server.js"], {
            "IDP_PORT": str(self.idp_port), "IDP_ISSUER": self.issuer,
            "IDP_CLIENT_ID": CLIENT_ID, "IDP_CLIENT_SECRET": self.secret,
            "IDP_REDIRECT_URIS": redirect, "IDP_ACCESS_TOKEN_TTL": str(ttl),
            "IDP_TOKEN_TTL": "86400", "IDP_ROTATE_REFRESH": "1",
            # An hour of logins and refreshes must not evict live refresh tokens.
            "IDP_STORE_SIZE": "2000000",
        })
        wait_port(self.idp_port, self.children[-1], "idp")
        self.proxy = IdpProxy(self.proxy_port, self.idp_port)
        self.proxy.up()
        config = {
            "provider": "oidc", "oidc_issuer_url": self.issuer, "idp_cluster": "idp",
            "client_id": CLIENT_ID, "client_secret_env": "OAUTH2_CLIENT_SECRET",
            "cookie_secret_env": "OAUTH2_COOKIE_SECRET", "redirect_url": redirect,
            "email_domains": ["*"], "cookie_secure": False, "set_xauthrequest": True,
            "pass_access_token": True, "pass_authorization_header": True,
            "skip_jwt_bearer_tokens": True, "skip_auth_routes": ["GET=^/public/"],
        }
        boot = ec.bootstrap(self.port, self.admin, self.app_port, self.proxy_port,
                            ec.gate_filter(str(WASM), json.dumps(config)))
        # Every 5xx with Envoy's reason for it: the filter's own answers and anything Envoy
        # itself answered (an upstream reset, a timeout) are told apart in the report.
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        hcm["typed_config"]["access_log"] = [{
            "name": "envoy.access_loggers.file",
            "filter": {"status_code_filter": {"comparison": {
                "op": "GE", "value": {"default_value": 500, "runtime_key": "soak_log_5xx"}}}},
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(workdir / FIVE_XX_LOG),
                "log_format": {"text_format_source": {"inline_string":
                    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"}},
            },
        }]
        path = workdir / "envoy.json"
        path.write_text(json.dumps(boot, indent=1))
        self.envoy = self.start("envoy", [
            str(ENVOY), "-c", str(path), "--concurrency", str(CONCURRENCY),
            "--disable-hot-restart", "--log-level", "warn"], {
            "OAUTH2_CLIENT_SECRET": self.secret,
            "OAUTH2_COOKIE_SECRET": base64.b64encode(os.urandom(32)).decode()})
        wait_port(self.port, self.envoy, "envoy", timeout=90)

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        p = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT)
        self.children.append(p)
        return p

    def stop(self) -> None:
        if self.proxy.server:
            self.proxy.down()
        for p in reversed(self.children):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.children):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()

    def stats(self, pattern: str) -> dict[str, int]:
        url = f"http://127.0.0.1:{self.admin}/stats?filter={urllib.request.quote(pattern)}"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out

    def vms(self) -> dict[str, int]:
        s = self.stats(r"^wasm\.")
        return {
            "created": s.get("wasm.envoy.wasm.runtime.v8.created", 0),
            "active": s.get("wasm.envoy.wasm.runtime.v8.active", 0),
            "reloads": sum(v for k, v in s.items() if ".vm_reload" in k),
        }

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.envoy.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def counters(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.idp_port}/test/counters",
                                    timeout=5) as r:
            return json.load(r)

    def five_xx_causes(self) -> dict[str, int]:
        """Envoy's access log of 5xx answers, counted by status, flags and reason."""
        path = self.workdir / FIVE_XX_LOG
        out: dict[str, int] = {}
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if line.strip():
                    out[line.strip()] = out.get(line.strip(), 0) + 1
        return out

    def envoy_log(self) -> str:
        return (self.workdir / "envoy.log").read_text(errors="replace")


# ------------------------------------------------------------------ traffic


class Session:
    def __init__(self, cookie: str, id_token: str):
        self.cookie = cookie
        self.id_token = id_token
        self.signed_out = False


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


def session_cookies(headers: list[tuple[str, str]]) -> tuple[dict[str, str], bool]:
    """The session cookies a response stores, and whether it expires one."""
    stored, deleted = {}, False
    for k, v in headers:
        if k.lower() != "set-cookie":
            continue
        pair, _, attrs = v.partition(";")
        name, _, value = pair.strip().partition("=")
        if not re.fullmatch(rf"{COOKIE}(_\d+)?", name):
            continue
        low = attrs.lower().replace(" ", "")
        if value == "" or "max-age=0" in low or "1970" in low:
            deleted = True
        else:
            stored[name] = value
    return stored, deleted


class Soak:
    def __init__(self, stack: Stack, minutes: float, outage_s: float, seed: int):
        self.st = stack
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.pool: list[Session] = []
        self.records: list[tuple] = []  # (t, phase, kind, status, ms, verdict)
        self.total_s = minutes * 60
        self.outage_start = (self.total_s - outage_s) / 2
        self.outage_end = self.outage_start + outage_s
        self.t0 = 0.0
        self.unexpected: list[str] = []
        self.idp_unreachable_logins = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def phase(self, t: float) -> str:
        if t < self.outage_start:
            return "before"
        if t < self.outage_end:
            return "outage"
        return "after"

    def idp_trouble(self, t: float) -> bool:
        return self.outage_start <= t < self.outage_end + RECOVERY_S

    def record(self, t: float, kind: str, status: int, ms: float, ok: bool, why: str) -> None:
        with self.lock:
            self.records.append((t, self.phase(t), kind, status, ms, ok))
            if not ok and len(self.unexpected) < 200:
                self.unexpected.append(f"{t:7.1f}s {self.phase(t)} {kind}: {status} {why}")

    # Each kind returns (status, ok, why).

    def do_login(self) -> tuple[int, bool, str]:
        b = Browser()
        t = self.now()
        try:
            first = b.request(f"http://127.0.0.1:{self.st.port}/headers")
            if first.status != 302:
                return first.status, False, "the gate did not send the browser to log in"
            callback, _ = login(b, f"http://127.0.0.1:{self.st.port}/headers", self.st.port,
                                "john", "john")
        except (OSError, http.client.HTTPException, RuntimeError) as e:
            if self.idp_trouble(t) or self.idp_trouble(self.now()):
                with self.lock:
                    self.idp_unreachable_logins += 1
                return 302, True, ""
            return 0, False, f"login failed: {e}"
        finally:
            b.close()
        jar = b.jars.get(self.st.port, {})
        cookie = "; ".join(f"{k}={v}" for k, v in jar.items() if k.startswith(COOKIE)
                           and not k.endswith("_csrf"))
        if not cookie:
            # The IdP went away between its login form and the callback: the gate cannot
            # redeem the code and answers its error page (the fault table's `b01` answer).
            if callback.status in (502, 503, 504) and (self.idp_trouble(t)
                                                       or self.idp_trouble(self.now())):
                with self.lock:
                    self.idp_unreachable_logins += 1
                return 302, True, ""
            return callback.status, False, "the login left no session"
        status, _, body = get(self.st.port, "/headers",
                              {"Accept": "application/json", "Cookie": cookie})
        if status != 200:
            return status, self.idp_trouble(t) and status == 503, "the new session"
        token = json.loads(body).get("authorization", "").removeprefix("Bearer ")
        with self.lock:
            self.pool.append(Session(cookie, token))
            if len(self.pool) > POOL:
                self.pool.pop(0)
        return 302, True, ""

    def pick(self) -> Session | None:
        with self.lock:
            return self.rng.choice(self.pool) if self.pool else None

    def do_session(self, browser: bool) -> tuple[int, bool, str]:
        s = self.pick()
        if s is None:
            return -1, True, ""
        t = self.now()
        accept = "text/html" if browser else "application/json"
        status, headers, body = get(self.st.port, "/headers", {"Accept": accept, "Cookie": s.cookie})
        stored, deleted = session_cookies(headers)
        if stored:
            with self.lock:
                cur = dict(p.split("=", 1) for p in s.cookie.split("; "))
                cur.update(stored)
                s.cookie = "; ".join(f"{k}={v}" for k, v in cur.items())
        if status == 200:
            ok = json.loads(body).get("x-forwarded-email") == JOHN
            return status, ok, "the app did not see john"
        if status == 503 and self.idp_trouble(t) and not deleted:
            return status, True, ""
        if s.signed_out and (status == 401 or (browser and status == 302)):
            return status, True, ""
        return status, False, f"session (deleted={deleted})"

    def do_bearer(self) -> tuple[int, bool, str]:
        s = self.pick()
        if s is None or not s.id_token:
            return -1, True, ""
        status, _, body = get(self.st.port, "/headers", {
            "Accept": "application/json", "Authorization": f"Bearer {s.id_token}"})
        ok = status == 200 and json.loads(body).get("x-forwarded-email") == JOHN
        return status, ok, "bearer token"

    def do_sign_out(self) -> tuple[int, bool, str]:
        with self.lock:
            if len(self.pool) < 4:
                return -1, True, ""
            s = self.pool.pop(self.rng.randrange(len(self.pool)))
            s.signed_out = True
        status, headers, _ = get(self.st.port, "/oauth2/sign_out",
                                 {"Accept": "text/html", "Cookie": s.cookie})
        _, deleted = session_cookies(headers)
        return status, status == 302 and deleted, "sign-out must expire the session"

    def do_simple(self, kind: str) -> tuple[int, bool, str]:
        if kind == "public":
            status, _, _ = get(self.st.port, f"/public/{self.rng.randrange(1000)}", {"Accept": "text/html"})
            return status, status == 200, "public route"
        if kind == "ping":
            status, _, _ = get(self.st.port, "/ping", {})
            return status, status == 200, "/ping"
        if kind == "anonymous":
            status, _, _ = get(self.st.port, "/api", {"Accept": "application/json"})
            return status, status == 401, "anonymous API client"
        # forged
        browser = self.rng.random() < 0.5
        value = base64.urlsafe_b64encode(os.urandom(self.rng.randrange(16, 600))).decode()
        status, _, _ = get(self.st.port, "/headers", {
            "Accept": "text/html" if browser else "application/json",
            "Cookie": f"{COOKIE}={value}"})
        return status, status == (302 if browser else 401), "forged cookie"

    def one(self, kind: str) -> None:
        t = self.now()
        start = time.perf_counter()
        try:
            if kind == "login":
                status, ok, why = self.do_login()
            elif kind in ("session_api", "session_browser"):
                status, ok, why = self.do_session(kind == "session_browser")
            elif kind == "bearer":
                status, ok, why = self.do_bearer()
            elif kind == "sign_out":
                status, ok, why = self.do_sign_out()
            else:
                status, ok, why = self.do_simple(kind)
        except (OSError, http.client.HTTPException, ValueError) as e:
            status, ok, why = 0, False, f"no answer: {e}"
        if status == -1:
            return
        self.record(t, kind, status, (time.perf_counter() - start) * 1e3, ok, why)

    def client(self, stop: threading.Event, pause: float) -> None:
        kinds = list(WEIGHTS)
        weights = [WEIGHTS[k] for k in kinds]
        while not stop.is_set():
            with self.lock:
                kind = self.rng.choices(kinds, weights)[0]
            self.one(kind)
            stop.wait(pause)


# ------------------------------------------------------------------ the run


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in samples) / den * 3600


def run(args) -> dict:
    minutes = args.minutes
    short = minutes < 10
    ttl = 10 if short else 60
    outage_s = max(10.0, minutes * 60 / 4) if short else 120.0
    workdir = Path(tempfile.mkdtemp(prefix="wop-soak-"))
    say(f"{minutes} min, access tokens {ttl} s, IdP outage {outage_s:.0f} s in the middle; "
        f"logs in {workdir}")
    st = Stack(workdir, ttl)
    soak = Soak(st, minutes, outage_s, args.seed)
    try:
        # Warm-up: a pool of sessions, Envoy's VMs compiled, caches filled.
        soak.t0 = time.monotonic()
        for _ in range(12):
            soak.one("login")
        for k in WEIGHTS:
            if k not in ("login", "sign_out"):
                soak.one(k)
        soak.records.clear()
        soak.unexpected.clear()
        counters0 = st.counters()
        vms0 = st.vms()
        rss0 = st.rss_mb()
        say(f"warm: {len(soak.pool)} sessions, RSS {rss0:.1f} MB, VMs {vms0}")

        stop = threading.Event()
        soak.t0 = time.monotonic()
        threads = [threading.Thread(target=soak.client, args=(stop, args.pause), daemon=True)
                   for _ in range(args.clients)]
        for th in threads:
            th.start()
        rss: list[tuple[float, float]] = []
        went_down = came_back = False
        while soak.now() < soak.total_s:
            t = soak.now()
            if not went_down and t >= soak.outage_start:
                say(f"{t:.0f}s: the IdP goes down")
                st.proxy.down()
                went_down = True
            if went_down and not came_back and t >= soak.outage_end:
                say(f"{t:.0f}s: the IdP is back")
                st.proxy.up()
                came_back = True
            rss.append((t, st.rss_mb()))
            time.sleep(1.0)
        stop.set()
        for th in threads:
            th.join(timeout=60)
        counters1 = st.counters()
        vms1 = st.vms()
        codes = st.stats(r"^http\.bench\.downstream_rq_[1-5]xx$")
        log = st.envoy_log()
        time.sleep(1.5)  # Envoy flushes its access log every second
        causes = st.five_xx_causes()
    finally:
        st.stop()

    phases = ["before", "outage", "after"]
    by_phase = {p: {"count": 0, "classes": {}, "kinds": {}, "ms": [], "login_ms": [],
                    "session_ms": []} for p in phases}
    for t, phase, kind, status, ms, ok in soak.records:
        ph = by_phase[phase]
        ph["count"] += 1
        cls = f"{status // 100}xx" if status else "no answer"
        ph["classes"][cls] = ph["classes"].get(cls, 0) + 1
        k = ph["kinds"].setdefault(kind, {})
        k[str(status)] = k.get(str(status), 0) + 1
        # A login is a whole walk through the IdP's pages; the rest are one request each.
        if kind == "login":
            ph["login_ms"].append(ms)
        else:
            ph["ms"].append(ms)
        if kind.startswith("session"):
            ph["session_ms"].append(ms)
    for ph in by_phase.values():
        for key in ("ms", "session_ms", "login_ms"):
            xs = ph.pop(key)
            name = key.removesuffix("ms")
            ph[f"{name}p50_ms"] = round(percentile(xs, 50), 1)
            ph[f"{name}p99_ms"] = round(percentile(xs, 99), 1)
    last_503 = max((r[0] for r in soak.records if r[5] and r[3] == 503), default=None)
    unexpected_5xx = sum(1 for r in soak.records if not r[5] and r[3] >= 500)
    expected_503 = sum(1 for r in soak.records if r[5] and r[3] == 503)
    diff = {k: counters1[k] - counters0.get(k, 0) for k in counters1}
    growth = max(v for _, v in rss) - rss0
    # The slope leaves out the first half of the run (caches filling, V8's first GCs).
    late = [(t, v) for t, v in rss if t >= soak.total_s / 2]
    vm_failures = [l for l in log.splitlines()
                   if any(n in l for n in ("panicked at", "Uncaught", "RuntimeError",
                                            "Wasm VM failed"))]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    res = {
        "command": args.command,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "minutes": minutes,
        "clients": args.clients,
        "access_token_ttl_s": ttl,
        "outage_s": [round(soak.outage_start), round(soak.outage_end)],
        "recovery_allowance_s": RECOVERY_S,
        "requests": len(soak.records),
        "phases": by_phase,
        "unexpected": len([r for r in soak.records if not r[5]]),
        "unexpected_5xx": unexpected_5xx,
        "expected_503": expected_503,
        "last_503_after_recovery_s": (round(last_503 - soak.outage_end, 1)
                                      if last_503 is not None else None),
        "unexpected_examples": soak.unexpected[:20],
        "logins_while_idp_unreachable": soak.idp_unreachable_logins,
        "envoy_response_codes": codes,
        "envoy_5xx_causes": causes,
        "idp": diff,
        "refresh_reused": diff.get("refresh_reused", 0),
        "rss_mb": {"after_warmup": round(rss0, 1), "max": round(max(v for _, v in rss), 1),
                   "end": round(rss[-1][1], 1), "growth": round(growth, 1),
                   "slope_mb_per_hour": round(slope_mb_per_hour(late), 2)},
        "vms": {"start": vms0, "end": vms1},
        "vm_restarts": vms1["reloads"] - vms0["reloads"] + abs(vms1["active"] - vms0["active"])
        + (vms1["created"] - vms0["created"]),
        "vm_failures_logged": vm_failures[:5],
    }
    failures = []
    if res["unexpected"]:
        failures.append(f"{res['unexpected']} unexpected answers ({unexpected_5xx} of them 5xx)")
    if res["refresh_reused"]:
        failures.append(f"the IdP saw {res['refresh_reused']} refresh tokens presented twice")
    if res["vm_restarts"] or vm_failures:
        failures.append(f"Wasm VMs changed: {vms0} then {vms1}; {vm_failures[:2]}")
    if growth > RSS_BOUND_MB:
        failures.append(f"Envoy's RSS grew {growth:.1f} MB after the warm-up (bound {RSS_BOUND_MB})")
    slope = res["rss_mb"]["slope_mb_per_hour"]
    if minutes >= 30 and slope > SLOPE_BOUND_MB_H:
        failures.append(f"Envoy's RSS rises {slope} MB/h (bound {SLOPE_BOUND_MB_H} MB/h)")
    if diff.get("refresh", 0) == 0:
        failures.append("no session was refreshed: the run proves nothing about refreshes")
    if not by_phase["outage"]["classes"].get("5xx") and outage_s >= ttl:
        failures.append("no 503 during the outage: no session needed the IdP while it was down")
    res["failures"] = failures
    res["ok"] = not failures
    return res


def markdown(res: dict) -> str:
    lines = [
        "# Soak: mixed traffic and an IdP outage",
        "",
        f"`{res['command']}` on commit {res['commit'] or '?'} ({res['date']}, "
        f"{res['cpus']} CPUs): {res['minutes']} min, {res['clients']} clients, "
        f"{res['requests']} requests; access tokens live {res['access_token_ttl_s']} s (refresh "
        f"tokens rotate); the IdP is down from {res['outage_s'][0]} s to {res['outage_s'][1]} s.",
        f"Result: **{'passed' if res['ok'] else 'FAILED'}**"
        + ("" if res["ok"] else " — " + "; ".join(res["failures"])),
        "",
        "Latency in ms: one request through the gate (every kind but logins), requests on a "
        "session (which make the refreshes), and whole logins through the IdP's pages.",
        "",
        "| phase | requests | 2xx | 3xx | 4xx | 5xx | no answer | p50 | p99 | session p50 | "
        "session p99 | login p50 | login p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, ph in res["phases"].items():
        c = ph["classes"]
        lines.append(f"| {name} | {ph['count']} | {c.get('2xx', 0)} | {c.get('3xx', 0)} | "
                     f"{c.get('4xx', 0)} | {c.get('5xx', 0)} | {c.get('no answer', 0)} | "
                     f"{ph['p50_ms']} | {ph['p99_ms']} | {ph['session_p50_ms']} | "
                     f"{ph['session_p99_ms']} | {ph['login_p50_ms']} | {ph['login_p99_ms']} |")
    lines += ["", "Answers by kind and phase (status: count):", "",
              "| kind | before | outage | after |", "| --- | --- | --- | --- |"]
    kinds = sorted({k for ph in res["phases"].values() for k in ph["kinds"]})
    for k in kinds:
        cells = []
        for ph in res["phases"].values():
            d = ph["kinds"].get(k, {})
            cells.append(", ".join(f"{s}: {n}" for s, n in sorted(d.items())) or "–")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    r, idp = res["rss_mb"], res["idp"]
    lines += [
        "",
        f"- Unexpected answers: **{res['unexpected']}** (unexpected 5xx: **{res['unexpected_5xx']}**); "
        f"expected 503s (a session due for refresh while the IdP was down, or within "
        f"{res['recovery_allowance_s']:.0f} s after): {res['expected_503']}, the last "
        f"{res['last_503_after_recovery_s']} s after the IdP was back; logins that could not "
        f"reach the IdP while it was down: {res['logins_while_idp_unreachable']}.",
        f"- The IdP: {idp.get('refresh', 0)} refreshes, {idp.get('refresh_failed', 0)} refused, "
        f"**{res['refresh_reused']}** refresh tokens presented twice (reuse detection), "
        f"{idp.get('code', 0)} logins, {idp.get('revocation', 0)} revocations, "
        f"{idp.get('discovery', 0)} discovery and {idp.get('jwks', 0)} JWKS fetches.",
        f"- Envoy's RSS: {r['after_warmup']} MB after the warm-up, {r['max']} MB at most, "
        f"{r['end']} MB at the end (growth {r['growth']} MB; slope {r['slope_mb_per_hour']} MB/h "
        f"over the second half{', not meaningful in a run this short' if res['minutes'] < 30 else ''}).",
        f"- Wasm VMs (Envoy's stats): {res['vms']['start']} then {res['vms']['end']}: "
        f"**{res['vm_restarts']}** restarts.",
        f"- Envoy's own count of answers: {res['envoy_response_codes']}.",
        "- Envoy's access log of 5xx (status, flags, reason: count): "
        + (", ".join(f"`{k}`: {n}" for k, n in sorted(res["envoy_5xx_causes"].items()))
           or "none") + ".",
    ]
    if res["unexpected_examples"]:
        lines += ["", "Unexpected answers (first 20):", ""]
        lines += [f"    {u}" for u in res["unexpected_examples"]]
    return "\n".join(lines) + "\n"


def fill_reliability(path: Path, md: str) -> None:
    text = path.read_text()
    begin, end = "<!-- soak:begin -->", "<!-- soak:end -->"
    if begin not in text or end not in text:
        raise RuntimeError(f"{path} has no {begin} … {end} section")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = md.replace("# Soak: mixed traffic and an IdP outage\n\n", "")
    path.write_text(f"{head}{begin}\n{body}{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--pause", type=float, default=0.02, help="seconds between a client's requests")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--reliability", type=Path, help="fill this file's soak section")
    ap.add_argument("--command", default="python3 -m bench.soak_mixed")
    args = ap.parse_args(argv)
    if not WASM.exists():
        print(f"soak: {WASM} is missing; run `just build`", file=sys.stderr)
        return 2
    res = run(args)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "soak.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (args.results / "soak.md").write_text(md)
    if args.reliability:
        fill_reliability(args.reliability, md)
    print(md)
    for f in res["failures"]:
        say(f"FAILED: {f}")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

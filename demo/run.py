#!/usr/bin/env python3
"""Run the wasm-oauth2-proxy demo: IdP + demo app + Envoy with the filter.

    python3 demo/run.py            (normally through `just demo`, which builds first)
    python3 demo/run.py --github   (`just demo-github`: a mock GitHub as the provider)

  http://127.0.0.1:4180/   Envoy with the filter, in front of the demo app
  http://127.0.0.1:9000/   the OpenID Provider (idp/server.js), or with --github the mock
                           GitHub's web host (login_url, redeem_url)
  http://127.0.0.1:9001/   with --github: the mock GitHub's API host (validate_url)
  http://127.0.0.1:8080/   the demo app itself (demo/app.js), unprotected
  http://127.0.0.1:9901/   Envoy's admin interface

With --github the filter runs with demo/config-github.json (`provider: github`) against
the tests' mock GitHub (tests/support/mock_github.rs, run by examples/mock_github.rs, which
this script builds with cargo): the sign-in page's "Sign in with GitHub" logs in as octocat,
a member of example-org and its team demo.

Stops everything on Ctrl-C or SIGTERM (exit 0); if a process dies, stops the
rest and exits non-zero with the end of its output. Python stdlib only.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTEN_PORT, ADMIN_PORT, APP_PORT, IDP_PORT = 4180, 9901, 8080, 9000
# --github: the mock's web host takes the IdP's port; its API host has its own cluster.
GITHUB_API_PORT = 9001
GITHUB_API_CLUSTER = "github_api"
CLIENT_SECRET = "demo-app-secret-change-me"
ENVOY = ROOT / ".venv" / "bin" / "envoy"
WASM = ROOT / "build" / "wasm_oauth2_proxy.wasm"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
TAIL_LINES = 40

_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


class Child:
    """A child process whose output is echoed with a prefix and remembered."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: a terminal's Ctrl-C reaches only this script,
            # which then stops the children in order.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(line)
            say(f"[{self.name}] {line}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            try:
                self.proc.terminate()
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                say(f"demo: {self.name} did not stop in {STOP_TIMEOUT:.0f}s, killing it")
                self.proc.kill()
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._reader.join(timeout=1.0)

    def report_death(self) -> None:
        self._reader.join(timeout=1.0)
        say(f"demo: {self.name} exited with status {self.proc.returncode}; its last output:")
        for line in self.tail:
            say(f"  | {line}")


class Stop(Exception):
    pass


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str, want_body: str | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            body = resp.read().decode("utf-8", "replace")
            return resp.status == 200 and (want_body is None or want_body in body)
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(child: Child, check, what: str, children: list[Child], stopping: threading.Event) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if stopping.is_set():
            raise Stop
        for c in children:
            if not c.alive():
                c.report_death()
                raise SystemExit(1)
        if check():
            return
        time.sleep(0.1)
    say(f"demo: {child.name} not ready ({what}) after {START_TIMEOUT:.0f}s; its last output:")
    for line in child.tail:
        say(f"  | {line}")
    raise SystemExit(1)


def preflight(github: bool) -> None:
    problems = []
    if not ENVOY.exists():
        problems.append(f"{ENVOY.relative_to(ROOT)} missing (run `just setup`)")
    if not WASM.exists():
        problems.append(f"{WASM.relative_to(ROOT)} missing (run `just build`)")
    if not github and not (ROOT / "idp" / "node_modules").is_dir():
        problems.append("idp/node_modules missing (run `just setup`)")
    ports = (LISTEN_PORT, ADMIN_PORT, APP_PORT, IDP_PORT) + ((GITHUB_API_PORT,) if github else ())
    for port in ports:
        if port_open(port):
            problems.append(f"port {port} on 127.0.0.1 is already in use")
    if problems:
        for p in problems:
            say(f"demo: {p}")
        raise SystemExit(1)


def render_envoy(out: Path, github: bool) -> None:
    config = ROOT / "demo" / ("config-github.json" if github else "config.json")
    # The GitHub config's API host needs a cluster of its own (`idp_clusters`).
    extra = ["--cluster", f"{GITHUB_API_CLUSTER}={GITHUB_API_PORT}"] if github else []
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "render_envoy.py"),
            "--template", str(ROOT / "envoy" / "local.yaml.tmpl"),
            "--out", str(out),
            *extra,
            f"LISTEN_PORT={LISTEN_PORT}",
            f"ADMIN_PORT={ADMIN_PORT}",
            f"APP_PORT={APP_PORT}",
            f"IDP_PORT={IDP_PORT}",
            f"WASM_PATH={WASM}",
            f"PLUGIN_CONFIG=@{config}",
        ],
        check=True,
    )


def build_mock_github() -> Path:
    """Build examples/mock_github.rs; returns the path of the program."""
    say("demo: cargo build --example mock_github")
    subprocess.run(["cargo", "build", "--quiet", "--example", "mock_github"], cwd=ROOT, check=True)
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    program = Path(json.loads(meta)["target_directory"]) / "debug" / "examples" / "mock_github"
    if not program.exists():
        say(f"demo: {program} missing after cargo build")
        raise SystemExit(1)
    return program


def start_idp(base_env: dict[str, str], children: list[Child], stopping: threading.Event) -> None:
    idp = Child("idp", ["node", "idp/server.js"], {
        **base_env,
        "IDP_PORT": str(IDP_PORT),
        "IDP_HOST": "127.0.0.1",
        "IDP_ISSUER": f"http://127.0.0.1:{IDP_PORT}",
        "IDP_CLIENT_ID": "demo-app",
        "IDP_CLIENT_SECRET": CLIENT_SECRET,
        "IDP_REDIRECT_URIS": f"http://127.0.0.1:{LISTEN_PORT}/oauth2/callback",
        # Short-lived tokens, so the demo shows the filter refreshing them.
        "IDP_TOKEN_TTL": "60",
        "IDP_ACCESS_TOKEN_TTL": "60",
    })
    children.append(idp)
    wait_ready(
        idp,
        lambda: http_ok(f"http://127.0.0.1:{IDP_PORT}/.well-known/openid-configuration"),
        "discovery document", children, stopping,
    )


def start_mock_github(program: Path, children: list[Child], stopping: threading.Event) -> None:
    github = Child("github", [
        str(program),
        "--web-port", str(IDP_PORT),
        "--api-port", str(GITHUB_API_PORT),
        "--client-id", "demo-app",
        "--client-secret", CLIENT_SECRET,
        "--redirect-uri", f"http://127.0.0.1:{LISTEN_PORT}/oauth2/callback",
    ])
    children.append(github)
    wait_ready(
        github,
        lambda: port_open(IDP_PORT) and port_open(GITHUB_API_PORT),
        f"ports {IDP_PORT} and {GITHUB_API_PORT}", children, stopping,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--github", action="store_true",
                        help="a mock GitHub instead of the OpenID Provider (provider: github)")
    args = parser.parse_args()
    preflight(args.github)
    mock_program = build_mock_github() if args.github else None
    stopping = threading.Event()

    def on_signal(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    children: list[Child] = []
    try:
        with tempfile.TemporaryDirectory(prefix="wop-demo-") as tmp:
            envoy_yaml = Path(tmp) / "envoy.yaml"
            render_envoy(envoy_yaml, args.github)

            base_env = dict(os.environ)
            if mock_program is not None:
                start_mock_github(mock_program, children, stopping)
            else:
                start_idp(base_env, children, stopping)

            app = Child("app", ["node", "demo/app.js"], {
                **base_env, "APP_PORT": str(APP_PORT), "APP_HOST": "127.0.0.1",
            })
            children.append(app)
            wait_ready(app, lambda: port_open(APP_PORT), f"port {APP_PORT}", children, stopping)

            cookie_secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            envoy = Child("envoy", [
                str(ENVOY), "-c", str(envoy_yaml),
                "--concurrency", "2", "--log-level", "warn",
                # No shared-memory hot-restart state: lets other Envoys
                # (e.g. the e2e tests) run beside the demo.
                "--disable-hot-restart",
            ], {
                **base_env,
                "OAUTH2_CLIENT_SECRET": CLIENT_SECRET,
                "OAUTH2_COOKIE_SECRET": cookie_secret,
            })
            children.append(envoy)
            wait_ready(
                envoy,
                lambda: http_ok(f"http://127.0.0.1:{ADMIN_PORT}/ready", "LIVE"),
                "admin /ready LIVE", children, stopping,
            )

            say("")
            say(f"  wasm-oauth2-proxy demo is up: open http://127.0.0.1:{LISTEN_PORT}/")
            if args.github:
                say(f"  sign-in page: http://127.0.0.1:{LISTEN_PORT}/oauth2/sign_in")
                say("  click \"Sign in with GitHub\": the mock GitHub approves as octocat")
            else:
                say("  log in as john / john   (also jane / jane, bigjohn / bigjohn)")
            say("  Ctrl-C to stop")
            say("")

            while not stopping.is_set():
                for c in children:
                    if not c.alive():
                        c.report_death()
                        return 1
                stopping.wait(0.2)
            say("demo: stopping")
            return 0
    except Stop:
        say("demo: stopping")
        return 0
    finally:
        # Ignore further signals while stopping; stop in reverse start order.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for c in reversed(children):
            c.stop()


if __name__ == "__main__":
    sys.exit(main())

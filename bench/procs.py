"""Child processes of the benchmark: nginx upstream, the local IdP, the Envoys.

Every child is started through `taskset` so Envoy owns core 0 and everything else
(upstream, IdP, load generator) shares core 1. `taskset` execs its command, so the
PID we hold is the real process and its /proc entry is the one we read. Stdlib only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVOY = ROOT / ".venv" / "bin" / "envoy"
ENVOY_CORE = "0"
OTHER_CORE = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout}s")


class Procs:
    """Owns the children; stops them all, newest first."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, core: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        proc = subprocess.Popen(
            ["taskset", "-c", core, *argv],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.children.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def report_failure(self, what: str, error: Exception, lines: int = 10) -> None:
        """Prints why a run failed and the last log lines of every process it started."""
        print(f"{what}: FAILED: {error}", file=sys.stderr)
        for name, _ in self.children:
            tail = self.log_tail(name, lines)
            if tail.strip():
                print(f"--- {name} ---\n{tail}", file=sys.stderr)

    def stop(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.clear()


def start_nginx(procs: Procs, port: int) -> subprocess.Popen:
    """One nginx worker answering 200 from memory, echoing what the auth layer passed on."""
    d = procs.workdir / "nginx"
    d.mkdir(exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    large_client_header_buffers 8 64k;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            add_header X-Upstream nginx always;
            add_header X-Seen-User $http_x_forwarded_user always;
            add_header X-Seen-Jwt $http_x_jwt_payload always;
            return 200 "ok\\n";
        }}
    }}
}}
""")
    proc = procs.start("nginx", OTHER_CORE, ["nginx", "-c", str(conf)])
    wait_port(port, proc, "nginx")
    return proc


def start_idp(procs: Procs, port: int, redirect_uris: list[str], client_secret: str,
              env: dict | None = None) -> subprocess.Popen:
    proc = procs.start(
        "idp",
        OTHER_CORE,
        ["node", "idp/server.js"],
        env={
            "IDP_PORT": str(port),
            "IDP_REDIRECT_URIS": ",".join(redirect_uris),
            "IDP_CLIENT_SECRET": client_secret,
            "IDP_TOKEN_TTL": "86400",
            **(env or {}),
        },
    )
    wait_port(port, proc, "idp")
    return proc


class Envoy:
    """One Envoy, one worker, on core 0, with its own admin port."""

    def __init__(self, procs: Procs, name: str, bootstrap: dict, port: int, admin: int,
                 env: dict | None = None, args: list[str] | None = None):
        self.name = name
        self.port = port
        self.admin = admin
        path = procs.workdir / f"envoy-{name}.json"
        path.write_text(json.dumps(bootstrap, indent=1))
        self.proc = procs.start(
            f"envoy-{name}",
            ENVOY_CORE,
            [str(ENVOY), "-c", str(path), "--concurrency", "1", "--disable-hot-restart",
             "--log-level", "warn", *(args or [])],
            env=env,
        )
        self.pid = self.proc.pid
        self.log_name = f"envoy-{name}"

    def wait_ready(self) -> None:
        wait_port(self.port, self.proc, f"envoy-{self.name}")

    def cpu_ticks(self) -> int:
        """utime + stime of the Envoy process, in clock ticks."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def cpu_ns(self) -> int:
        """CPU time of the Envoy process in nanoseconds: the sum over its threads of the
        first field of /proc/PID/task/TID/schedstat (the scheduler's own run time, not
        sampled in clock ticks). Falls back to `cpu_ticks` where schedstat is missing.
        Threads that exited between two readings drop out of the sum; Envoy keeps its
        threads for its whole life."""
        total = 0
        try:
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                try:
                    total += int((task / "schedstat").read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
        except OSError:
            total = 0
        if total == 0:
            return self.cpu_ticks() * 1_000_000_000 // CLK_TCK
        return total

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def response_codes(self, stat_prefix: str = "bench") -> dict[str, int]:
        """downstream_rq_{1..5}xx of the benchmark listener (not the admin one); with several
        listeners, of the one whose connection manager has `stat_prefix`."""
        url = (f"http://127.0.0.1:{self.admin}/stats?filter="
               f"^http\\.{stat_prefix}\\.downstream_rq_[1-5]xx$")
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        out = {f"{c}xx": 0 for c in "12345"}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            out[name.rsplit("_", 1)[-1]] = int(value)
        return out

"""A minimal scripted browser for the benchmark's logins: follows redirects by hand, keeps
cookies per port (so the gate's cookies and the IdP's stay apart on 127.0.0.1) and
times single hops. Cookie attributes are ignored on purpose: `Secure` cookies from
Envoy's own oauth2 filter must still be replayed over plain-HTTP loopback. Stdlib only."""

from __future__ import annotations

import html.parser
import http.client
import time
import urllib.parse


class FormParser(html.parser.HTMLParser):
    """The first form's action and its named inputs."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields: dict[str, str] = {}
        self.in_form = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
            self.in_form = True
        elif tag == "input" and self.in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False


class Hop:
    def __init__(self, url: str, status: int, headers: list[tuple[str, str]], body: bytes, seconds: float):
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body
        self.seconds = seconds

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name), None)

    def set_cookies(self) -> list[str]:
        return [v for n, v in self.headers if n.lower() == "set-cookie"]


class Browser:
    def __init__(self):
        self.jars: dict[int, dict[str, str]] = {}
        self.conns: dict[int, http.client.HTTPConnection] = {}

    def cookie_header(self, port: int) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.jars.get(port, {}).items())

    def _store(self, port: int, hop: Hop) -> None:
        jar = self.jars.setdefault(port, {})
        for line in hop.set_cookies():
            pair, _, attrs = line.partition(";")
            name, _, value = pair.strip().partition("=")
            low = attrs.lower()
            if "max-age=0" in low.replace(" ", "") or "1970" in low or value == "":
                jar.pop(name, None)
            else:
                jar[name] = value

    def request(self, url: str, method: str = "GET", body: bytes | None = None) -> Hop:
        u = urllib.parse.urlsplit(url)
        port = u.port or 80
        headers = {"Accept": "text/html", "Host": u.netloc}
        cookies = self.cookie_header(port)
        if cookies:
            headers["Cookie"] = cookies
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        target = u.path + (f"?{u.query}" if u.query else "")
        for attempt in range(2):
            conn = self.conns.get(port) or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            self.conns[port] = conn
            try:
                start = time.perf_counter()
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                seconds = time.perf_counter() - start
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self.conns.pop(port, None)
                if attempt:
                    raise
        hop = Hop(url, resp.status, resp.getheaders(), data, seconds)
        if resp.getheader("connection", "").lower() == "close":
            conn.close()
            self.conns.pop(port, None)
        self._store(port, hop)
        return hop

    def close(self) -> None:
        for c in self.conns.values():
            c.close()
        self.conns.clear()



def submit_interaction(url: str, hop, user: str, password: str) -> tuple[str, str, bytes]:
    """The IdP's login or consent page answered as a user would: its form, with the
    credentials filled in when it asks for them. Returns the next (url, method, body)."""
    form = FormParser()
    form.feed(hop.body.decode(errors="replace"))
    if form.action is None:
        raise RuntimeError(f"no form on {url}")
    data = dict(form.fields)
    if "login" in data or "password" in data:
        data.update(login=user, password=password)
    return urllib.parse.urljoin(url, form.action), "POST", urllib.parse.urlencode(data).encode()

def login(b: Browser, start_url: str, app_port: int, user: str, password: str) -> tuple[Hop, list[Hop]]:
    """Runs one login starting at `start_url` (which must redirect to the IdP) and returns
    the hop that came back to the app's port with the code (the callback) and every hop."""
    hops = []
    url, method, body = start_url, "GET", None
    callback = None
    for _ in range(12):
        hop = b.request(url, method, body)
        hops.append(hop)
        port = urllib.parse.urlsplit(url).port
        if port == app_port and "code=" in url:
            callback = hop
        if hop.status in (301, 302, 303, 307, 308):
            url, method, body = urllib.parse.urljoin(url, hop.header("location") or ""), "GET", None
            continue
        if "/interaction/" in url and hop.status == 200:
            url, method, body = submit_interaction(url, hop, user, password)
            continue
        break
    if callback is None:
        trail = " -> ".join(f"{h.status} {h.url.split('?')[0]}" for h in hops)
        raise RuntimeError(f"login as {user} never reached the callback: {trail}")
    return callback, hops

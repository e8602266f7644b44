"""Real tokens from the local IdP for the bearer-token measurements: the authorization-code
flow run directly against the IdP with the benchmark's own client (the same client id,
secret and redirect URI the gate uses), stopping at the redirect back to the app, then the
code exchanged at the token endpoint; and the refresh-token grant for more ID tokens of the
same login. The ID token is what a machine client presents as `Authorization: Bearer`: it
is signed by the issuer and its `aud` is the client id. Stdlib only."""

from __future__ import annotations

import base64
import http.client
import json
import os
import urllib.parse

from .browser import Browser, submit_interaction


class TokenError(RuntimeError):
    pass


def _basic(client_id: str, secret: str) -> str:
    # RFC 6749 2.3.1: both parts form-urlencoded before the Basic encoding.
    q = urllib.parse.quote_plus
    return "Basic " + base64.b64encode(f"{q(client_id)}:{q(secret)}".encode()).decode()


def authorization_code(idp_port: int, client_id: str, secret: str, redirect_uri: str,
                       user: str, password: str, browser: Browser | None = None) -> dict:
    """Logs `user` in at the IdP and returns its token response (id_token, access_token,
    refresh_token, ...). Pass a `browser` to keep the IdP's login session between calls
    (each call is still a new authorization with its own code and nonce)."""
    b = browser or Browser()
    idp = f"http://127.0.0.1:{idp_port}"
    state = base64.urlsafe_b64encode(os.urandom(12)).decode()
    url = f"{idp}/auth?" + urllib.parse.urlencode({
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid email profile",
        "state": state,
        "nonce": base64.urlsafe_b64encode(os.urandom(12)).decode(),
    })
    method, body = "GET", None
    code = None
    try:
        for _ in range(12):
            hop = b.request(url, method, body)
            if hop.status in (301, 302, 303, 307, 308):
                nxt = urllib.parse.urljoin(url, hop.header("location") or "")
                if nxt.startswith(redirect_uri):
                    q = urllib.parse.parse_qs(urllib.parse.urlsplit(nxt).query)
                    if q.get("state") != [state] or "code" not in q:
                        raise TokenError(f"IdP redirected back without a code: {nxt[:200]}")
                    code = q["code"][0]
                    break
                url, method, body = nxt, "GET", None
                continue
            if "/interaction/" in url and hop.status == 200:
                try:
                    url, method, body = submit_interaction(url, hop, user, password)
                except RuntimeError as e:
                    raise TokenError(str(e)) from e
                continue
            raise TokenError(f"IdP answered {hop.status} at {url.split('?')[0]}")
    finally:
        if browser is None:
            b.close()
    if code is None:
        raise TokenError("the IdP never redirected back with a code")
    return token_request(idp_port, client_id, secret, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})


def refresh(idp_port: int, client_id: str, secret: str, refresh_token: str,
            conn: http.client.HTTPConnection | None = None) -> dict:
    """The refresh-token grant: a new token response, with a new ID token."""
    return token_request(idp_port, client_id, secret,
                         {"grant_type": "refresh_token", "refresh_token": refresh_token}, conn)


def token_request(idp_port: int, client_id: str, secret: str, form: dict,
                  conn: http.client.HTTPConnection | None = None) -> dict:
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", idp_port, timeout=10)
    try:
        c.request("POST", "/token", body=urllib.parse.urlencode(form), headers={
            "Authorization": _basic(client_id, secret),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        })
        r = c.getresponse()
        data = r.read()
    finally:
        if own:
            c.close()
    if r.status != 200:
        raise TokenError(f"token endpoint answered {r.status}: {data[:300]!r}")
    out = json.loads(data)
    if "id_token" not in out:
        raise TokenError(f"no id_token in the token response ({sorted(out)})")
    return out


def claims(jwt: str) -> dict:
    """The payload of a JWT, unverified (for checks and for shaping forged tokens)."""
    return json.loads(b64url_decode(jwt.split(".")[1]))


def header(jwt: str) -> dict:
    return json.loads(b64url_decode(jwt.split(".")[0]))


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")

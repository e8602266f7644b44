"""Starts the whole benchmark stack: nginx, the IdP, and one Envoy per auth configuration,
all running at once so measured rounds can be interleaved. Stdlib only."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

from . import envoy_configs as ec
from . import tokens
from .procs import ROOT, Envoy, Procs, free_ports, start_idp, start_nginx

CLIENT_ID = "demo-app"
JWT_ISSUER = "https://bench.example"
JWT_AUDIENCE = "bench"


def gate_plugin_config(idp_port: int, redirect_url: str) -> str:
    """The filter's configuration in every measured case (3)–(6)."""
    return json.dumps({
        "provider": "oidc",
        "oidc_issuer_url": f"http://127.0.0.1:{idp_port}",
        "idp_cluster": "idp",
        "client_id": CLIENT_ID,
        "client_secret_env": "OAUTH2_CLIENT_SECRET",
        "cookie_secret_env": "OAUTH2_COOKIE_SECRET",
        "redirect_url": redirect_url,
        "email_domains": ["*"],
        "cookie_secure": False,
        "skip_auth_routes": ["GET=^/public/"],
        # Row 5: a verified ID token in `Authorization: Bearer` stands in for a session.
        "skip_jwt_bearer_tokens": True,
    })


def mint_jwt() -> dict:
    """A fresh key and a bearer JWT for `jwt_authn` (`token`, `jwks`)."""
    minted = subprocess.run(
        ["node", str(ROOT / "bench" / "mint_jwt.mjs"), JWT_ISSUER, JWT_AUDIENCE],
        check=True, capture_output=True, text=True,
    )
    return json.loads(minted.stdout)


class Stack:
    def __init__(self, procs: Procs, gate_wasm: Path, trivial_wasm: Path, hostcalls_wasm: Path,
                 before_wasm: Path | None = None):
        self.procs = procs
        ports = free_ports(20)
        self.app_port, self.idp_port = ports[0], ports[1]
        names = ["base", "trivial", "hostcalls", "gate", "oauth2", "jwt", "jwt_cache", "gate_before"]
        self.ports = {n: (ports[2 + 2 * i], ports[3 + 2 * i]) for i, n in enumerate(names)}
        self.client_secret = base64.urlsafe_b64encode(os.urandom(24)).decode()
        cookie_secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        self.redirect_uris = [
            f"http://127.0.0.1:{self.ports['gate'][0]}/oauth2/callback",
            f"http://127.0.0.1:{self.ports['oauth2'][0]}/callback",
        ]

        start_nginx(procs, self.app_port)
        start_idp(procs, self.idp_port, self.redirect_uris, self.client_secret)
        jwt = mint_jwt()
        self.bearer = jwt["token"]

        plugin = gate_plugin_config(self.idp_port, self.redirect_uris[0])
        # Builds from before bearer support refuse the option as unknown; their rows (3′,
        # 4′) carry no bearer token, so they run without it.
        plugin_before = json.dumps({k: v for k, v in json.loads(plugin).items()
                                    if k != "skip_jwt_bearer_tokens"})
        filters = {
            "base": ([], None),
            "trivial": (ec.trivial_filter(str(trivial_wasm)), None),
            "hostcalls": (ec.trivial_filter(str(hostcalls_wasm)), None),
            "gate": (ec.gate_filter(str(gate_wasm), plugin), None),
            "oauth2": (
                ec.native_oauth2(self.idp_port, self.ports["oauth2"][0], CLIENT_ID),
                ec.native_oauth2_secrets(self.client_secret,
                                         base64.b64encode(os.urandom(32)).decode()),
            ),
            "jwt": (ec.jwt_authn(JWT_ISSUER, JWT_AUDIENCE, jwt["jwks"], cache=False), None),
            "jwt_cache": (ec.jwt_authn(JWT_ISSUER, JWT_AUDIENCE, jwt["jwks"], cache=True), None),
        }
        if before_wasm is not None:
            # Another build of the filter with the same secrets, so the same cookies work.
            filters["gate_before"] = (ec.gate_filter(str(before_wasm), plugin_before), None)
        gate_env = {"OAUTH2_CLIENT_SECRET": self.client_secret, "OAUTH2_COOKIE_SECRET": cookie_secret}
        self.envoys: dict[str, Envoy] = {}
        for name, (filt, secrets) in filters.items():
            port, admin = self.ports[name]
            boot = ec.bootstrap(port, admin, self.app_port, self.idp_port, filt, secrets)
            self.envoys[name] = Envoy(procs, name, boot, port, admin,
                                      env=gate_env if name.startswith("gate") else None)
        for e in self.envoys.values():
            e.wait_ready()

    def id_token(self, user: str) -> str:
        """A real ID token for `user`, straight from the IdP: the authorization-code flow
        with the gate's own client and redirect URI, stopped before the redirect reaches
        the gate, and the code exchanged at the token endpoint."""
        t = tokens.authorization_code(self.idp_port, CLIENT_ID, self.client_secret,
                                      self.redirect_uris[0], user, user)
        return t["id_token"]

    def url(self, envoy: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.envoys[envoy].port}{path}"

#!/usr/bin/env python3
"""Package the optimized filter as OCI images for Istio's WasmPlugin and push them.

    oci.py build  [--wasm W] [--out build/oci] [--version V]
    oci.py digest [--wasm W] [--version V] [--tag T]
    oci.py push   --registry HOST[:PORT]/NAME [--layout build/oci] [--tag T ...] [--plain-http]

Two tags per version, both in the shapes Istio's image fetcher (pkg/wasm/imagefetcher.go)
accepts:

  <version>       "compat" variant: an OCI image whose last (only) layer is an
                  application/vnd.oci.image.layer.v1.tar+gzip holding plugin.wasm.
  <version>-wasm  "oci" variant: exactly two layers, the runtime config
                  (application/vnd.module.wasm.config.v1+json) and the module
                  (application/vnd.module.wasm.content.layer.v1+wasm).

Everything is byte-reproducible (fixed tar headers, gzip mtime 0, no timestamps, sorted
compact JSON), so the manifest digest - what a WasmPlugin's `sha256` pins - depends only on
the .wasm and the version. Standard library only: this runs before any venv exists.

Pushing speaks the OCI distribution API directly: blob HEAD, POST + PUT upload, manifest
PUT; Bearer-token (WWW-Authenticate) and Basic challenges with optional OCI_USERNAME /
OCI_PASSWORD; plain HTTP for loopback registries or with --plain-http.
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import ssl
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WASM = os.path.join(ROOT, "build", "wasm_oauth2_proxy.wasm")
DEFAULT_LAYOUT = os.path.join(ROOT, "build", "oci")

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
MT_WASM_CONTENT = "application/vnd.module.wasm.content.layer.v1+wasm"
REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"
WASM_TAG_SUFFIX = "-wasm"


class OciError(Exception):
    pass


def canonical_json(obj):
    # Sorted keys and no whitespace: the same object always hashes the same.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, annotations=None):
    d = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def crate_version():
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as f:
        text = f.read()
    # The first `version` inside [package]; tomllib would do, but is 3.11+ only.
    package = re.search(r"^\[package\]\s*$(.*?)(?=^\[|\Z)", text, re.S | re.M)
    m = package and re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M)
    if not m:
        raise OciError("no [package] version in Cargo.toml")
    return m.group(1)


def read_leb128(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise OciError("truncated LEB128 in .wasm")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def wasm_exports(data):
    """Export names of a core wasm module (also checks that it is one)."""
    if data[:8] != b"\0asm\x01\0\0\0":
        raise OciError("not a WebAssembly 1.0 module (bad magic or version)")
    pos, names = 8, []
    while pos < len(data):
        section_id = data[pos]
        size, pos = read_leb128(data, pos + 1)
        end = pos + size
        if section_id == 7:
            count, p = read_leb128(data, pos)
            for _ in range(count):
                n, p = read_leb128(data, p)
                names.append(data[p : p + n].decode("utf-8"))
                _, p = read_leb128(data, p + n + 1)  # kind byte, then index
        pos = end
    return names


def proxy_abi_versions(wasm):
    # The host picks the ABI from these exports; the runtime config advertises the same.
    abis = sorted(n for n in wasm_exports(wasm) if n.startswith("proxy_abi_version_"))
    if not abis:
        raise OciError("the .wasm exports no proxy_abi_version_*: not a proxy-wasm filter")
    return abis


def plugin_tar_gz(wasm):
    """plugin.wasm in a gzip'd tar whose bytes depend on the module only."""
    raw = io.BytesIO()
    # USTAR with fixed owner, mode and mtime: no pax headers, nothing from the build host.
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(wasm))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    # GzipFile, not gzip.compress: the latter lets zlib write the OS byte, which varies.
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as f:
        f.write(tar_bytes)
    return tar_bytes, gz.getvalue()


def build_images(wasm, version):
    """{tag: (manifest bytes, {digest: blob bytes})} for both variants."""
    abis = proxy_abi_versions(wasm)
    version_note = {"org.opencontainers.image.version": version}

    tar_bytes, layer = plugin_tar_gz(wasm)
    image_config = canonical_json(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar_bytes)]},
        }
    )
    compat = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": descriptor(MT_IMAGE_CONFIG, image_config),
        "layers": [descriptor(MT_TAR_GZIP, layer)],
        # Required by the compat spec for tar+gzip layers.
        "annotations": dict(version_note, **{"module.wasm.image/variant": "compat"}),
    }

    runtime_config = canonical_json(
        {"type": "envoy_proxy", "abiVersions": abis, "config": {}}
    )
    # Istio never reads the image config of this variant; `{}` is what oras/wasme push.
    empty_config = b"{}"
    artifact = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": descriptor(MT_IMAGE_CONFIG, empty_config),
        "layers": [
            descriptor(MT_WASM_CONFIG, runtime_config, {TITLE: "runtime-config.json"}),
            descriptor(MT_WASM_CONTENT, wasm, {TITLE: "plugin.wasm"}),
        ],
        "annotations": version_note,
    }

    images = {}
    for tag, manifest, blobs in (
        (version, compat, [image_config, layer]),
        (version + WASM_TAG_SUFFIX, artifact, [empty_config, runtime_config, wasm]),
    ):
        images[tag] = (canonical_json(manifest), {sha256_digest(b): b for b in blobs})
    return images


def write_layout(images, out):
    """A fresh OCI image layout at `out` (replaced whole, so no stale blobs linger)."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".oci-", dir=parent)
    try:
        blob_dir = os.path.join(tmp, "blobs", "sha256")
        os.makedirs(blob_dir)
        manifests = []
        for tag, (manifest, blobs) in images.items():
            for digest, data in list(blobs.items()) + [(sha256_digest(manifest), manifest)]:
                with open(os.path.join(blob_dir, digest.split(":", 1)[1]), "wb") as f:
                    f.write(data)
            manifests.append(descriptor(MT_MANIFEST, manifest, {REF_NAME: tag}))
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        with open(os.path.join(tmp, "index.json"), "wb") as f:
            f.write(canonical_json(index))
        with open(os.path.join(tmp, "oci-layout"), "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_layout(layout):
    """{tag: (manifest bytes, {digest: blob bytes})} from an image layout, digests checked."""

    def blob(digest):
        algo, hexd = digest.split(":", 1)
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexd):
            raise OciError(f"unsupported digest {digest}")
        with open(os.path.join(layout, "blobs", "sha256", hexd), "rb") as f:
            data = f.read()
        if sha256_digest(data) != digest:
            raise OciError(f"{layout}: blob {digest} is corrupt")
        return data

    try:
        with open(os.path.join(layout, "index.json"), "rb") as f:
            index = json.load(f)
    except FileNotFoundError:
        raise OciError(f"no OCI layout at {layout} (run `just oci` first)") from None
    images = {}
    for desc in index.get("manifests", []):
        tag = desc.get("annotations", {}).get(REF_NAME)
        if not tag:
            continue
        manifest = blob(desc["digest"])
        parsed = json.loads(manifest)
        refs = [parsed["config"]] + parsed["layers"]
        images[tag] = (manifest, {d["digest"]: blob(d["digest"]) for d in refs})
    return images


# --- registry client -----------------------------------------------------------------


def is_loopback(host):
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    return name == "localhost" or name == "::1" or name.startswith("127.")


def parse_registry(ref):
    """`host[:port]/name` -> (host, name)."""
    host, sep, name = ref.partition("/")
    if not sep or not name or not host:
        raise OciError(f"registry must be HOST[:PORT]/NAME, got {ref!r}")
    if ":" in name or "@" in name:
        raise OciError(f"give the repository without tag or digest, got {ref!r}")
    component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    if not re.fullmatch(f"{component}(?:/{component})*", name):
        raise OciError(f"invalid repository name {name!r}")
    return host, name


def parse_challenge(header):
    """`Bearer realm="..",service=".."` -> ("bearer", {realm:.., service:..})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(
        (k.lower(), v)
        for k, v in re.findall(r'([A-Za-z][\w-]*)\s*=\s*"((?:[^"\\]|\\.)*)"', rest)
    )
    return scheme.lower(), params


class Registry:
    def __init__(self, host, name, plain_http=False, username=None, password=None):
        self.host, self.name = host, name
        self.scheme = "http" if plain_http or is_loopback(host) else "https"
        self.username, self.password = username, password
        self.auth = None  # the Authorization header value once a challenge was answered

    def url(self, path):
        return f"{self.scheme}://{self.host}/v2/{self.name}/{path}"

    def _send(self, method, url, headers, body):
        u = urllib.parse.urlsplit(url)
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.netloc, timeout=120)
        else:
            conn = http.client.HTTPConnection(u.netloc, timeout=120)
        try:
            path = u.path + ("?" + u.query if u.query else "")
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        except (OSError, http.client.HTTPException) as e:
            tls = isinstance(e, ssl.SSLError)
            hint = " (an HTTP-only registry? use --plain-http)" if tls else ""
            raise OciError(f"{method} {url}: {e}{hint}") from None
        finally:
            conn.close()

    def request(self, method, url, headers=None, body=None, expect=(200,)):
        headers = dict(headers or {})
        if body is not None:
            headers.setdefault("Content-Length", str(len(body)))
        for attempt in (1, 2):
            if self.auth:
                headers["Authorization"] = self.auth
            status, resp_headers, data = self._send(method, url, headers, body)
            challenge = resp_headers.get("WWW-Authenticate")
            if status == 401 and attempt == 1 and challenge:
                self._answer(challenge)
                continue
            break
        if status not in expect:
            detail = data.decode("utf-8", "replace")[:500]
            raise OciError(f"{method} {url}: HTTP {status} {detail}")
        return status, resp_headers, data

    def _answer(self, challenge):
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not (self.username and self.password):
                raise OciError("registry wants Basic auth: set OCI_USERNAME and OCI_PASSWORD")
            pair = f"{self.username}:{self.password}".encode()
            self.auth = "Basic " + base64.b64encode(pair).decode()
            return
        if scheme != "bearer" or "realm" not in params:
            raise OciError(f"unsupported auth challenge: {challenge}")
        query = {"scope": f"repository:{self.name}:pull,push"}
        if "service" in params:
            query["service"] = params["service"]
        sep = "&" if "?" in params["realm"] else "?"
        req = urllib.request.Request(params["realm"] + sep + urllib.parse.urlencode(query))
        if self.username and self.password:
            pair = f"{self.username}:{self.password}".encode()
            req.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                token_resp = json.load(resp)
        except urllib.error.HTTPError as e:
            raise OciError(f"token request to {params['realm']} failed: HTTP {e.code}") from None
        token = token_resp.get("token") or token_resp.get("access_token")
        if not token:
            raise OciError(f"token endpoint {params['realm']} returned no token")
        self.auth = "Bearer " + token

    def has_blob(self, digest):
        # Any 2xx/3xx means the registry has it (3xx redirects to its storage backend).
        status, _, _ = self.request(
            "HEAD", self.url(f"blobs/{digest}"), expect=(200, 301, 302, 303, 307, 308, 404)
        )
        return status != 404

    def put_blob(self, digest, data):
        if self.has_blob(digest):
            return False
        _, headers, _ = self.request(
            "POST", self.url("blobs/uploads/"), body=b"", expect=(202,)
        )
        location = headers.get("Location")
        if not location:
            raise OciError("upload POST returned no Location")
        location = urllib.parse.urljoin(f"{self.scheme}://{self.host}/", location)
        sep = "&" if urllib.parse.urlsplit(location).query else "?"
        target = location + sep + urllib.parse.urlencode({"digest": digest})
        self.request(
            "PUT",
            target,
            headers={"Content-Type": "application/octet-stream"},
            body=data,
            expect=(201,),
        )
        return True

    def put_manifest(self, tag, manifest, media_type):
        digest = sha256_digest(manifest)
        _, headers, _ = self.request(
            "PUT",
            self.url(f"manifests/{tag}"),
            headers={"Content-Type": media_type},
            body=manifest,
            expect=(201,),
        )
        echoed = headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise OciError(f"registry stored {tag} as {echoed}, expected {digest}")
        return digest


# --- commands ------------------------------------------------------------------------


def load_wasm(path):
    with open(path, "rb") as f:
        return f.read()


def cmd_build(args):
    version = args.version or crate_version()
    images = build_images(load_wasm(args.wasm), version)
    write_layout(images, args.out)
    for tag, (manifest, _) in images.items():
        print(f"oci: {args.out} {tag} {sha256_digest(manifest)}")


def cmd_digest(args):
    version = args.version or crate_version()
    images = build_images(load_wasm(args.wasm), version)
    if args.tag:
        if args.tag not in images:
            raise OciError(f"unknown tag {args.tag}; tags: {', '.join(images)}")
        # Bare hex: exactly what a WasmPlugin's `sha256` field takes.
        print(hashlib.sha256(images[args.tag][0]).hexdigest())
    else:
        for tag, (manifest, _) in images.items():
            print(f"{tag} {sha256_digest(manifest)}")


def cmd_push(args):
    host, name = parse_registry(args.registry)
    images = read_layout(args.layout)
    tags = args.tag or list(images)
    missing = [t for t in tags if t not in images]
    if missing:
        raise OciError(f"{args.layout} has no tag {', '.join(missing)}; tags: {', '.join(images)}")
    reg = Registry(
        host,
        name,
        plain_http=args.plain_http,
        username=os.environ.get("OCI_USERNAME"),
        password=os.environ.get("OCI_PASSWORD"),
    )
    pushed = {}
    for tag in tags:
        manifest, blobs = images[tag]
        for digest, data in blobs.items():
            uploaded = reg.put_blob(digest, data)
            print(f"push: blob {digest} {'uploaded' if uploaded else 'exists'}", file=sys.stderr)
        pushed[tag] = reg.put_manifest(tag, manifest, json.loads(manifest)["mediaType"])
        print(f"pushed {host}/{name}:{tag} {pushed[tag]}")
    print()
    for tag, digest in pushed.items():
        variant = "oci variant" if tag.endswith(WASM_TAG_SUFFIX) else "compat image"
        print(f"# WasmPlugin spec, {variant}:")
        print(f"  url: oci://{host}/{name}:{tag}")
        print(f"  sha256: {digest.split(':', 1)[1]}")


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="write the OCI image layout")
    b.add_argument("--wasm", default=DEFAULT_WASM)
    b.add_argument("--out", default=DEFAULT_LAYOUT)
    b.add_argument("--version", help="default: the Cargo.toml version")
    b.set_defaults(func=cmd_build)

    d = sub.add_parser("digest", help="print manifest digests without writing or pushing")
    d.add_argument("--wasm", default=DEFAULT_WASM)
    d.add_argument("--version", help="default: the Cargo.toml version")
    d.add_argument("--tag", help="print only this tag's digest, as bare hex")
    d.set_defaults(func=cmd_digest)

    s = sub.add_parser("push", help="push the layout's tags to a registry")
    s.add_argument("--registry", required=True, help="HOST[:PORT]/NAME")
    s.add_argument("--layout", default=DEFAULT_LAYOUT)
    s.add_argument("--tag", action="append", help="push only this tag (repeatable)")
    s.add_argument("--plain-http", action="store_true", help="http:// (implied for loopback)")
    s.set_defaults(func=cmd_push)

    args = p.parse_args(argv)
    # Keep stdout (results) and stderr (progress) in order when both go to a terminal.
    sys.stdout.reconfigure(line_buffering=True)
    try:
        args.func(args)
    except (OciError, OSError, http.client.HTTPException) as e:
        print(f"oci: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Pin the examples to the filter built from this tree (`just pin`).

    pin.py [--check]

Builds are reproducible, so the shipped examples name exact digests:
  envoy/sidecar-remote.yaml          sha256 of build/wasm_oauth2_proxy.wasm
  wasmplugin/wasmplugin.yaml         sha256 of the OCI image manifest `just oci` builds (tag <version>)
  wasmplugin/github/wasmplugin.yaml  the same image sha256 (the GitHub set)
  README.md                          the same WasmPlugin sha256, in the Istio section
  src/bin/wasm-oauth2-proxy/release.json  the same image sha256, which `wasm-oauth2-proxy convert`
                                     writes into the WasmPlugin it generates
(envoy/sidecar.yaml and envoy/sidecar-github.yaml load a local file and pin nothing.)
With --check, change nothing and exit 1 if any of them is stale (tests/e2e/sidecar.rs runs this).
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM = os.path.join(ROOT, "build", "wasm_oauth2_proxy.wasm")

# (file, pattern of the one line holding the digest, which digest)
PINS = [
    ("envoy/sidecar-remote.yaml", r'^(\s+sha256: ")([0-9a-f]{64})(")$', "wasm"),
    ("wasmplugin/wasmplugin.yaml", r'^(  sha256: ")([0-9a-f]{64})(")$', "image"),
    ("wasmplugin/github/wasmplugin.yaml", r'^(  sha256: ")([0-9a-f]{64})(")$', "image"),
    ("README.md", r'^(  sha256: ")([0-9a-f]{64})(")$', "image"),
    ("src/bin/wasm-oauth2-proxy/release.json", r'^(  "sha256": ")([0-9a-f]{64})(")$', "image"),
]


def digests(wasm):
    with open(wasm, "rb") as f:
        wasm_sha = hashlib.sha256(f.read()).hexdigest()
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "oci.py"), "digest", "--wasm", wasm],
        check=True, capture_output=True, text=True,
    ).stdout
    # "<version> sha256:<hex>" per tag; the image tag is the bare version.
    tags = dict(line.split() for line in out.splitlines() if line.strip())
    version = next(t for t in tags if not t.endswith("-wasm"))
    return {"wasm": wasm_sha, "image": tags[version].removeprefix("sha256:")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="report stale pins, change nothing")
    p.add_argument("--wasm", default=WASM)
    args = p.parse_args()
    want = digests(args.wasm)
    stale = []
    for rel, pattern, which in PINS:
        path = os.path.join(ROOT, rel)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        found = re.findall(pattern, text, flags=re.M)
        if len(found) != 1:
            sys.exit(f"pin: {rel}: expected one pinned sha256 line, found {len(found)}")
        if found[0][1] == want[which]:
            continue
        stale.append(f"{rel}: {found[0][1]} -> {want[which]}")
        if not args.check:
            text = re.sub(pattern, lambda m: m.group(1) + want[which] + m.group(3), text, flags=re.M)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    for s in stale:
        print(("stale " if args.check else "pinned ") + s)
    if args.check and stale:
        print("pin: run `just pin` (after `just build`) to update them", file=sys.stderr)
        sys.exit(1)
    if not stale:
        print(f"pin: up to date (wasm {want['wasm']}, image {want['image']})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Render an Envoy bootstrap template by replacing @KEY@ placeholders.

    render_envoy.py --template envoy/local.yaml.tmpl --out /tmp/envoy.yaml \\
        [--cluster NAME=PORT ...] \\
        LISTEN_PORT=4180 ADMIN_PORT=9901 APP_PORT=8080 IDP_PORT=9000 \\
        WASM_PATH=/abs/build/wasm_oauth2_proxy.wasm PLUGIN_CONFIG=@demo/config.json

Every value may end up inside a single-quoted YAML scalar, so single quotes are
doubled in every value ('' is YAML's escape for '). PLUGIN_CONFIG is JSON:
given as @path it is read from the file, and either way it is parsed and
written compactly on one line. Every placeholder in the template must be given
a value, and every KEY given must occur in the template. Each --cluster adds a
plain-HTTP cluster NAME to 127.0.0.1:PORT at the end of the clusters list (the
template ends with it), for hosts the plugin names in `idp_clusters`. Python
stdlib only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
JSON_KEYS = {"PLUGIN_CONFIG"}


def yaml_single_quoted(value: str) -> str:
    """Escape a value for the inside of a single-quoted YAML scalar."""
    if "\n" in value or "\r" in value:
        raise ValueError("values must be on one line")
    return value.replace("'", "''")


def compact_json(text: str, source: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: invalid JSON: {err}") from err
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_assignments(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not PLACEHOLDER.fullmatch(f"@{key}@"):
            raise ValueError(f"expected KEY=VALUE with KEY in [A-Z0-9_], got {item!r}")
        if key in JSON_KEYS:
            if value.startswith("@"):
                path = Path(value[1:])
                value = compact_json(path.read_text(encoding="utf-8"), str(path))
            else:
                value = compact_json(value, key)
        values[key] = yaml_single_quoted(value)
    return values


def render(template: str, values: dict[str, str]) -> str:
    wanted = set(PLACEHOLDER.findall(template))
    missing = sorted(wanted - values.keys())
    if missing:
        raise ValueError(f"no value for: {', '.join(missing)}")
    unused = sorted(values.keys() - wanted)
    if unused:
        raise ValueError(f"not in the template: {', '.join(unused)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


CLUSTER_NAME = re.compile(r"[a-z][a-z0-9_]*")


def extra_cluster(item: str) -> str:
    """A STATIC plain-HTTP cluster on 127.0.0.1 from NAME=PORT (as tests/support/stack.rs)."""
    name, sep, port = item.partition("=")
    if not sep or not CLUSTER_NAME.fullmatch(name) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--cluster: expected NAME=PORT, got {item!r}")
    return (
        f"  - name: {name}\n    type: STATIC\n    connect_timeout: 2s\n"
        f"    load_assignment:\n      cluster_name: {name}\n      endpoints:\n"
        f"      - lb_endpoints:\n        - endpoint:\n            address:\n"
        f"              socket_address: {{ address: 127.0.0.1, port_value: {int(port)} }}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cluster", action="append", default=[], metavar="NAME=PORT",
                        help="add a plain-HTTP cluster NAME to 127.0.0.1:PORT")
    parser.add_argument("values", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        values = parse_assignments(args.values)
        text = render(args.template.read_text(encoding="utf-8"), values)
        if args.cluster:
            if "\n  clusters:\n" not in text:
                raise ValueError("--cluster: the template has no clusters list")
            text = text.rstrip("\n") + "\n" + "".join(extra_cluster(c) for c in args.cluster)
    except (OSError, ValueError) as err:
        print(f"render_envoy: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

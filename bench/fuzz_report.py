#!/usr/bin/env python3
"""The result of `just fuzz` / `just fuzz-each` as Markdown: per property target (one JSON
line each from tests/properties.rs, FUZZ_RESULTS) the cases run, the time spent and the
failure, if any; plus the commit and the machine. A target that never wrote its line (it
crashed, or the run was cut short) is listed as missing. Stdlib only.

    python3 bench/fuzz_report.py --command "just fuzz-each 600" bench/results/fuzz.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def targets() -> list[str]:
    """Every `fuzz("name", …)` target of tests/properties.rs."""
    text = (ROOT / "tests" / "properties.rs").read_text()
    return re.findall(r'fuzz\(\s*"([a-z0-9_-]+)"', text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--command", default="just fuzz")
    args = ap.parse_args(argv)
    rows = []
    for line in args.results.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    seen = {r["target"] for r in rows}
    missing = [t for t in targets() if t not in seen]
    total_cases = sum(r["cases"] for r in rows)
    hours = sum(r["seconds"] for r in rows) / 3600
    failed = [r for r in rows if r["failed"]]
    out = [
        "# Fuzzing (property targets of tests/properties.rs)",
        "",
        f"`{args.command}` on commit {commit or '?'}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs: {len(rows)} targets, {total_cases} cases, "
        f"{hours:.2f} target-hours. Result: **{'FAILED' if failed or missing else 'passed'}**.",
        "",
        "| target | cases | seconds | result |",
        "| --- | ---: | ---: | --- |",
    ]
    for r in sorted(rows, key=lambda r: r["target"]):
        result = "ok" if not r["failed"] else "FAILED: " + r["failure"].replace("|", "\\|")[:300]
        out.append(f"| {r['target']} | {r['cases']} | {r['seconds']:.0f} | {result} |")
    for t in missing:
        out.append(f"| {t} | – | – | no result (crashed or cut short) |")
    if failed:
        out += ["", "A failing seed is kept in tests/properties.proptest-regressions and replayed "
                "by every later run; turn the shrunk input above into a named regression test."]
    print("\n".join(out))
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())

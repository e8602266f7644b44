#!/usr/bin/env python3
"""Write a minimal Proxy-Wasm (ABI 0.2.1) module that does nothing.

    stub_wasm.py OUT.wasm

`envoy --mode validate` instantiates the Wasm filter's VM, so validating the
Envoy template needs a module with the Proxy-Wasm ABI exports; this one stands
in when the real filter is not built. Its root context accepts any
configuration; it must never serve traffic. Python stdlib only.
"""

from __future__ import annotations

import sys
from pathlib import Path

I32 = 0x7F


def leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def vec(items: list[bytes]) -> bytes:
    return leb(len(items)) + b"".join(items)


def section(ident: int, payload: bytes) -> bytes:
    return bytes([ident]) + leb(len(payload)) + payload


def name(s: str) -> bytes:
    raw = s.encode()
    return leb(len(raw)) + raw


def functype(params: list[int], results: list[int]) -> bytes:
    return b"\x60" + vec([bytes([p]) for p in params]) + vec([bytes([r]) for r in results])


def body(code: bytes) -> bytes:
    content = b"\x00" + code + b"\x0b"  # no locals, code, end
    return leb(len(content)) + content


def i32_const(n: int) -> bytes:
    return b"\x41" + sleb(n)


def module() -> bytes:
    types = [
        functype([], []),  # 0
        functype([I32], [I32]),  # 1
        functype([I32, I32], [I32]),  # 2
        functype([I32, I32], []),  # 3
    ]
    # (export name, type index, body)
    funcs = [
        ("proxy_abi_version_0_2_1", 0, b""),
        # Every allocation gets the same scratch area: enough for a stub.
        ("proxy_on_memory_allocate", 1, i32_const(1024)),
        ("proxy_on_vm_start", 2, i32_const(1)),
        ("proxy_on_configure", 2, i32_const(1)),
        ("proxy_on_context_create", 3, b""),
    ]
    exports = [name(n) + b"\x00" + leb(i) for i, (n, _, _) in enumerate(funcs)]
    exports.append(name("memory") + b"\x02" + leb(0))
    return (
        b"\x00asm\x01\x00\x00\x00"
        + section(1, vec(types))
        + section(3, vec([leb(t) for _, t, _ in funcs]))
        + section(5, vec([b"\x00" + leb(2)]))  # memory: min 2 pages
        + section(7, vec(exports))
        + section(10, vec([body(code) for _, _, code in funcs]))
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(module())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Hand-assembled pickles for the FLAME importer's tests (protocol 2 opcodes, no pickler involved).

A real numpy would never write these; a hostile file can, using only names the FLAME loader allows.
"""

from __future__ import annotations

import struct


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def raw(b: bytes) -> bytes:
    return b"C" + bytes([len(b)]) if len(b) < 256 else b"B" + struct.pack("<I", len(b))


def small(i: int) -> bytes:
    return b"K" + bytes([i])


def dtype(spec: str, state: bytes | None = None) -> bytes:
    """numpy.dtype(spec, False, True), then BUILD with ``state`` (already an opcode stream)."""
    out = glob("numpy", "dtype") + text(spec) + b"\x89\x88\x87R"
    return out + (state + b"b" if state is not None else b"")


def array(shape: tuple[int, ...], dtype_ops: bytes, data: bytes) -> bytes:
    """_reconstruct(ndarray, (0,), b'b') then __setstate__((1, shape, dtype, False, data))."""
    out = glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
    out += small(0) + b"\x85" + raw(b"b") + b"b" + b"\x87R"
    dims = b"(" + b"".join(small(d) for d in shape) + b"t"
    return out + b"(" + small(1) + dims + dtype_ops + b"\x89" + raw(data) + data + b"tb"


def evil_object_field_pickle() -> bytes:
    """{'v_template': array} whose dtype has an object field, flags "holds references" but not
    "list pickle": numpy copies the 8 data bytes in raw and later frees them as a PyObject* (SIGSEGV)."""
    inner = dtype("O8")
    fields = b"}" + text("a") + inner + small(0) + b"\x86s"
    state = b"(" + small(3) + text("|") + b"N" + text("a") + b"\x85" + fields + small(8) + small(1) + small(1) + b"t"
    body = array((1,), dtype("V8", state), b"\x41" * 8)
    return b"\x80\x02}" + text("v_template") + body + b"s."

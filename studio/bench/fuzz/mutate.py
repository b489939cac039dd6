"""Mutations: of raw bytes, of OBJ text and of JSON documents. All draw from a numpy Generator."""

from __future__ import annotations

import json

import numpy as np

# Values that broke loaders before: float32 overflow from finite float64, NaN, huge and long
# integers, wrong types, and nesting deeper than any parser's recursion limit.
INTERESTING = [1e300, -1e300, 1e39, 3.5e38, 1e-320, 0, -1, 2 ** 31, 2 ** 63, 10 ** 30, "x", "../../etc/passwd",
               "/etc/hostname", None, True, [], {}, [1, 2], {"a": 1}, 1e6, 200000, 0.5, -0.0]
_DEEP = "<<DEEP>>"
_LONG_INT = "<<LONGINT>>"
_NAN = "<<NAN>>"
NUMBER_TOKENS = [b"1e39", b"1e300", b"-1e300", b"nan", b"inf", b"-inf", b"99999999999999999999", b"1e-320",
                 b"abc", b"", b"0x10", b"-5", b"4294967297", b"1.5"]


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """One to three random edits: bit flips, truncation, insertion, overwrite with edge bytes, splice."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(6))
        pos = int(rng.integers(len(out) + 1)) if out else 0
        if kind == 0 and out:
            for _ in range(int(rng.integers(1, 9))):
                i = int(rng.integers(len(out)))
                out[i] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            del out[pos:]
        elif kind == 2:
            out[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif kind == 3:
            edge = bytes(rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00",
                                     b"\x80\x00\x00\x00", b"\xff\xff\xff\x7f\x00\x00\x00\x00"]))
            out[pos:pos + len(edge)] = edge
        elif kind == 4 and out:
            a = int(rng.integers(len(out)))
            out[pos:pos] = out[a:a + int(rng.integers(1, 256))]
        elif out:
            del out[pos:pos + int(rng.integers(1, 64))]
    return bytes(out)


def mutate_obj_text(data: bytes, rng: np.random.Generator) -> bytes:
    """Replace a number with an edge token, or drop / duplicate a line."""
    lines = data.split(b"\n")
    i = int(rng.integers(len(lines)))
    kind = int(rng.integers(4))
    if kind <= 1:
        tokens = lines[i].split(b" ")
        j = int(rng.integers(len(tokens)))
        tokens[j] = NUMBER_TOKENS[int(rng.integers(len(NUMBER_TOKENS)))] if j else tokens[j]
        lines[i] = b" ".join(tokens)
    elif kind == 2:
        del lines[i]
    else:
        lines.insert(i, lines[int(rng.integers(len(lines)))])
    return b"\n".join(lines)


def mutate_json(doc, rng: np.random.Generator) -> bytes:
    """Replace one node of ``doc`` (a parsed JSON value) by an interesting value; UTF-8 text out."""
    doc = json.loads(json.dumps(doc))
    paths = list(_paths(doc, ()))
    path = paths[int(rng.integers(len(paths)))]
    choice = int(rng.integers(len(INTERESTING) + 3))
    value = INTERESTING[choice] if choice < len(INTERESTING) else [_DEEP, _LONG_INT, _NAN][choice - len(INTERESTING)]
    if not path:
        doc = value
    else:
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = value
    text = json.dumps(doc)
    text = text.replace(f'"{_DEEP}"', "[" * 5000 + "]" * 5000).replace(f'"{_LONG_INT}"', "9" * 4300)
    text = text.replace(f'"{_NAN}"', "NaN")
    if rng.random() < 0.1:  # invalid UTF-8 somewhere
        raw = bytearray(text.encode())
        raw.insert(int(rng.integers(len(raw) + 1)), 0xff)
        return bytes(raw)
    return text.encode()


def _paths(node, prefix):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))

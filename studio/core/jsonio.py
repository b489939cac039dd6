"""The one JSON reader for everything a user or a file can hand the studio.

Parameters, landmarks, intrinsics, sessions, model headers and import manifests all come through
``loads``/``read``: bounded in size, in nesting depth and in the length of a number, and every
way a document can be malformed (invalid UTF-8, bad syntax, NaN, a 5,000-digit integer, 10,000
nested lists) ends as one ``StudioError`` line that names the file. Python's own ``json`` raises
RecursionError on deep nesting and ValueError on long integers, which used to surface as
"internal error".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from studio.core import limits
from studio.core.errors import StudioError

MAX_BYTES = limits.JSON_BYTES  # the bounds are declared in limits.py with the studio's other size limits
MAX_DEPTH = limits.JSON_DEPTH
MAX_NUMBER_CHARS = limits.JSON_NUMBER_CHARS


def _depth_ok(text: str, limit: int) -> bool:
    """Bracket depth outside strings, without recursion."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _number(kind):
    def parse(s: str):
        if len(s) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number with {len(s)} characters")
        return kind(s)
    return parse


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def loads(data: bytes | str, what: str = "the JSON document", max_depth: int = MAX_DEPTH,
          max_bytes: int = MAX_BYTES):
    """Parse ``data`` (bytes are decoded as UTF-8); one ``StudioError`` line for anything malformed."""
    if len(data) > max_bytes:
        raise StudioError(f"{what} is {len(data) / 1e6:.0f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise StudioError(f"{what} is not UTF-8 text (byte {e.start})") from None
    else:
        text = data
    if not _depth_ok(text, max_depth):
        raise StudioError(f"{what} is nested more than {max_depth} levels deep")
    try:
        return json.loads(text, parse_int=_number(int), parse_float=_number(float), parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise StudioError(f"{what} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:
        raise StudioError(f"{what} is not valid JSON ({e})") from None


def read(path: str | os.PathLike, what: str | None = None, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES):
    """Read and parse a JSON file; a missing, unreadable or malformed file is one ``StudioError`` line."""
    path = Path(path)
    what = what or str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise StudioError(f"{what} is {size / 1e6:.0f} MB; the limit is {max_bytes / 1e6:.0f} MB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise StudioError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise StudioError(f"{what} is a folder, not a JSON file") from None
    except OSError as e:
        raise StudioError(f"cannot read {what}: {e.strerror or e}") from None
    return loads(data, what, max_depth, max_bytes)


def expect(value, kind: type | tuple, what: str):
    """``value`` if it is a ``kind`` (e.g. dict for a document), else one line saying what it is."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in kinds:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise StudioError(f"{what} should be a JSON {_json_name(names)}, not {_json_name(type(value).__name__)}")
    return value


def _json_name(py: str) -> str:
    return {"dict": "object", "list": "array", "str": "string", "int": "integer", "float": "number",
            "NoneType": "null", "bool": "true/false"}.get(py, py)

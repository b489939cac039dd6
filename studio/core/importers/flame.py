"""Importer for FLAME (2019/2020/2023) ``generic_model.pkl`` / ``flame2023.pkl``.

FLAME is published as a Python-2 pickle whose arrays are often chumpy ``Ch`` objects. Unpickling
runs code named by the file, so it is read with a restricted unpickler: only the numpy/scipy
reconstruction functions a FLAME file actually needs are allowed, chumpy classes become inert
stubs (chumpy is never imported, and need not be installed), and any other reference is refused.
Even the allowed numpy names never reach numpy: they build plain-data placeholders that become
arrays only after their dtype, shape and byte count have been checked (see ``_to_array``).

The linear part of FLAME is  vertices = v_template + shapedirs · [β; ψ]: the first directions of
``shapedirs`` are identity shape, the last 100 expression. FLAME's shapedirs are already scaled
so β, ψ ~ N(0, 1), which is exactly Face Studio's σ-unit convention. Pose (posedirs, joints,
skinning weights) is articulation, not part of the linear model, and is ignored here.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np

from studio.core import limits
from studio.core.errors import StudioError
from studio.core.facemodel import ModelMeta, ParamGroup
from studio.core.pca import LinearGroup, PCAModel
from studio.core.progress import ProgressFn, report

ATTRIBUTION = ("FLAME. Cite: T. Li, T. Bolkart, M. J. Black, H. Li, J. Romero, \"Learning a model of facial "
               "shape and expression from 4D scans\", ACM Transactions on Graphics (Proc. SIGGRAPH Asia) "
               "36(6), 2017. FLAME is distributed by the Max Planck Institute for Intelligent Systems under "
               "its own licence (flame.is.tue.mpg.de): Face Studio does not ship it; you must have "
               "downloaded it yourself and must follow the terms you accepted.")

N_EXPRESSION = 100  # FLAME's shapedirs always end with 100 expression directions


def load_flame_pkl(path: str | Path, name: str, n_shape: int | None = None, n_expr: int | None = None,
                   progress: ProgressFn | None = None) -> PCAModel:
    """Read a FLAME model pickle; keep the first ``n_shape`` / ``n_expr`` components (all if None)."""
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"{path} does not exist or is not a file")
    report(progress, 0.0, "reading FLAME model")
    data = _unpickle(path)
    report(progress, 0.6, "building the model")
    if not isinstance(data, dict):
        raise StudioError(f"{path} holds a {type(data).__name__}, not a FLAME model dictionary")

    v_template = _array(data, "v_template", path)
    if v_template.ndim != 2 or v_template.shape[1] != 3 or len(v_template) == 0:
        raise StudioError(f"{path}: v_template is {list(v_template.shape)}, expected [N, 3]")
    n = len(v_template)
    faces = _faces(_array(data, "f", path), n, path)
    shapedirs = _array(data, "shapedirs", path)
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (n, 3):
        raise StudioError(f"{path}: shapedirs is {list(shapedirs.shape)}, expected [{n}, 3, D]")
    d = shapedirs.shape[2]
    if d <= N_EXPRESSION:
        raise StudioError(f"{path}: shapedirs has {d} directions; FLAME has shape directions followed by "
                          f"{N_EXPRESSION} expression directions")
    shape_total = d - N_EXPRESSION
    n_shape = _count(n_shape, shape_total, "n_shape", path)
    n_expr = _count(n_expr, N_EXPRESSION, "n_expr", path)

    linear = []
    for group, prefix, lo, k in (("shape", "PC", 0, n_shape), ("expression", "EXP", shape_total, n_expr)):
        if k == 0:
            continue  # a group with no parameters would only clutter the panels
        block = shapedirs[:, :, lo:lo + k]
        if not np.all(np.isfinite(block)):
            raise StudioError(f"{path}: shapedirs ({group}) contains NaN or infinite values")
        names = tuple(f"{prefix}{i + 1}" for i in range(k))
        # (N, 3, k) → (k, N, 3): one component is one contiguous block (see LinearGroup).
        basis = np.transpose(block, (2, 0, 1)).astype(np.float32)
        linear.append(LinearGroup(ParamGroup(group, names, "normal", np.ones(k)), basis))

    meta = ModelMeta(unit="m", attribution=ATTRIBUTION, source=f"FLAME (pickle) {path}")
    model = PCAModel(name, v_template, faces, linear, meta=meta)
    report(progress, 1.0, "done")
    return model


def _array(data: dict, key: str, path: Path) -> np.ndarray:
    """The ndarray stored under ``key``, unwrapping a chumpy ``Ch`` (its value is state['x'])."""
    if key not in data:
        raise StudioError(f"{path} has no '{key}' (is this a FLAME generic_model.pkl?)")
    value = data[key]
    if isinstance(value, _ChumpyStub):
        state = value.__dict__.get("state")
        x = state.get("x") if isinstance(state, dict) else None
        if not isinstance(x, _ArrayPlaceholder):
            # A derived chumpy node (e.g. a sum) has no stored value; evaluating it needs chumpy.
            raise StudioError(f"{path}: '{key}' is a {value._origin} without a stored array")
        value = x
    if not isinstance(value, _ArrayPlaceholder):
        raise StudioError(f"{path}: '{key}' is not a numeric array")
    try:
        value = _to_array(value)
    except StudioError as e:
        raise StudioError(f"{path}: '{key}' is not a numeric array: {e}") from None
    if value.dtype.kind == "f" and key == "v_template" and not np.all(np.isfinite(value)):
        raise StudioError(f"{path}: v_template contains NaN or infinite values")
    return value


def _faces(f: np.ndarray, n: int, path: Path) -> np.ndarray:
    if f.ndim != 2 or f.shape[1] != 3:
        raise StudioError(f"{path}: f is {list(f.shape)}, expected [M, 3]")
    if f.dtype.kind == "f" and not (np.all(np.isfinite(f)) and np.all(f == np.round(f))):
        raise StudioError(f"{path}: f contains non-integer vertex indices")
    if f.size and (f.min() < 0 or f.max() >= n):
        raise StudioError(f"{path}: f refers to vertices outside 0..{n - 1}")
    return f.astype(np.int64)


def _count(k, available: int, what: str, path: Path) -> int:
    if k is None:
        return available
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= available:
        raise StudioError(f"{what} must be a whole number from 0 to {available} for {path.name}, got {k!r}")
    return int(k)


# --------------------------------------------------------------------------------------------
# restricted unpickling
# --------------------------------------------------------------------------------------------

class _Refused(pickle.UnpicklingError):
    """A pickle asked for something a FLAME model does not contain (message: what it asked for)."""


class _Stub:
    """Stands in for a class the pickle names but we never import; keeps its state uninterpreted."""

    _origin = "object"

    def __setstate__(self, state):
        self.state = state


class _ChumpyStub(_Stub):
    pass


class _SparseStub(_Stub):
    # J_regressor is a scipy.sparse matrix; joints are not used, so its state is only kept.
    pass


def _reconstructor(cls, base, state):
    """copy_reg._reconstructor (Python 2 protocol 0/1 objects), limited to stubs and ``object``.

    The real one calls ``base.__new__``/``base.__init__`` of any class, which could run code.
    """
    if base is object and state is None and isinstance(cls, type) and (cls is object or issubclass(cls, _Stub)):
        return object.__new__(cls)
    raise _Refused(f"copy_reg._reconstructor applied to {getattr(cls, '__name__', cls)!r}")


def _codecs_encode(text, encoding="utf-8"):
    """Python 3 writes bytes at protocol ≤ 2 as _codecs.encode(str, 'latin1'); only that is allowed."""
    if isinstance(text, str) and encoding in ("latin1", "latin-1"):
        return text.encode("latin1")
    raise _Refused(f"_codecs.encode with encoding {encoding!r}")


# numpy never sees what the pickle says about an array until it has been checked: numpy's own
# reconstruction (dtype.__setstate__, ndarray.__setstate__) trusts its input, and a dtype with an
# object field whose flags say "not list-pickled" makes numpy free raw file bytes as PyObject*
# (SIGSEGV). So the names a FLAME file uses for arrays build inert placeholders holding plain
# data, and ``_to_array`` turns one into an ndarray only for a plain numeric dtype and a buffer of
# exactly the right length.

class _DtypePlaceholder:
    """numpy.dtype(spec, align, copy) and its BUILD state, kept as data."""

    spec = state = None

    def __init__(self, spec=None, align=False, copy=False):
        self.spec = spec

    def __setstate__(self, state):
        self.state = state


class _ArrayPlaceholder:
    """multiarray._reconstruct(ndarray, ...) plus its BUILD state (version, shape, dtype, fortran, data)."""

    state = None

    def __setstate__(self, state):
        self.state = state


class _NdarrayName:
    """What the name numpy.ndarray resolves to: only ever an argument of ``_reconstruct``."""


def _reconstruct(cls, shape=None, typecode=None):
    if cls is not _NdarrayName:
        raise _Refused(f"multiarray._reconstruct applied to {getattr(cls, '__name__', cls)!r}")
    return _ArrayPlaceholder()


def _frombuffer(buf, dtype, shape, order):
    """numpy's protocol-5 array reconstruction, as a placeholder like ``_reconstruct``'s."""
    a = _ArrayPlaceholder()
    a.state = (1, shape, dtype, order == "F", buf)
    return a


def _scalar(dtype, data=None):
    return _ArrayPlaceholder()  # numpy scalars are not part of the linear model; kept inert


# Plain numeric types only (Python 2 numpy wrote these spellings); anything else is refused.
_PLAIN = {f"{k}{n}" for k, sizes in (("f", (2, 4, 8)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)), ("b", (1,)))
          for n in sizes}


def _to_dtype(d) -> np.dtype:
    if not isinstance(d, _DtypePlaceholder) or not isinstance(d.spec, str) or d.spec not in _PLAIN:
        raise StudioError(f"not a plain numeric dtype ({getattr(d, 'spec', type(d).__name__)!r})")
    endian = "|"
    if d.state is not None:  # (version, endian, subarray, names, fields, elsize, alignment, flags)
        st = d.state
        if not (isinstance(st, tuple) and len(st) >= 5 and st[1] in ("<", ">", "|", "=")
                and st[2] is None and st[3] is None and st[4] is None):
            raise StudioError(f"dtype {d.spec!r} has a structured or unexpected state")
        endian = st[1]
    dt = np.dtype(d.spec)
    return dt.newbyteorder("<" if endian == "<" else ">") if endian in "<>" else dt


def _to_array(a) -> np.ndarray:
    """An ndarray from a placeholder whose every part has been checked; StudioError otherwise."""
    st = a.state if isinstance(a, _ArrayPlaceholder) else None
    if not (isinstance(st, tuple) and len(st) == 5 and st[0] == 1):
        raise StudioError("not a numpy array in the form numpy pickles them")
    _, shape, dtype, fortran, data = st
    if not (isinstance(shape, tuple) and len(shape) <= 8 and all(type(k) is int and k >= 0 for k in shape)):
        raise StudioError(f"array shape {shape!r} is not a list of sizes")
    dt = _to_dtype(dtype)
    data = data.encode("latin1") if isinstance(data, str) else data  # Python 2 str, read as latin-1
    if not isinstance(data, (bytes, bytearray)) or len(data) != math.prod(shape) * dt.itemsize:
        raise StudioError(f"array data does not match shape {list(shape)} of {dt}")
    return np.frombuffer(data, dt).reshape(shape, order="F" if fortran is True else "C").copy()


_ALLOWED = {("numpy", "ndarray"): _NdarrayName, ("numpy", "dtype"): _DtypePlaceholder,
            ("copy_reg", "_reconstructor"): _reconstructor, ("copyreg", "_reconstructor"): _reconstructor,
            ("_codecs", "encode"): _codecs_encode}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _scalar
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _frombuffer
for _builtins in ("__builtin__", "builtins"):  # chumpy's state holds sets; stubs derive from object
    _ALLOWED.update({(_builtins, "object"): object, (_builtins, "set"): set, (_builtins, "frozenset"): frozenset})

_SPARSE_CLASSES = {f"{fmt}_{kind}" for fmt in ("csc", "csr", "coo", "lil", "dok", "bsr", "dia")
                   for kind in ("matrix", "array")}


class _FlameUnpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file, encoding="latin1")  # Python 2 str → str; numpy accepts latin-1 text
        self._stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module, name):
        # Every global a pickle uses (GLOBAL, STACK_GLOBAL, INST, OBJ, EXT*) is resolved here.
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "chumpy" or module.startswith("chumpy."):
            return self._stub(module, name, _ChumpyStub)
        if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and name in _SPARSE_CLASSES:
            return self._stub(module, name, _SparseStub)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        raise _Refused("a persistent object id")

    def _stub(self, module: str, name: str, base: type) -> type:
        # One subclass per pickled class name, so error messages can say what the object was.
        key = (module, name)
        if key not in self._stubs:
            self._stubs[key] = type(f"Stub_{name}", (base,), {"_origin": f"{module}.{name}"})
        return self._stubs[key]


def _unpickle(path: Path):
    try:
        size = path.stat().st_size
        if size > limits.PICKLE_BYTES:
            raise StudioError(f"{path} is {size / limits.MiB:.0f} MiB; a FLAME model is far smaller (limit "
                              f"{limits.PICKLE_BYTES / limits.MiB:.0f} MiB)")
        # Read whole, so a length field in the pickle can never ask the file layer for more than it holds.
        data = path.read_bytes()
        return _FlameUnpickler(io.BytesIO(data)).load()
    except StudioError:
        raise
    except _Refused as e:
        raise StudioError(f"FLAME import refuses to load {path}: the pickle references {e}, "
                          "which is not part of a FLAME model") from None
    except Exception as e:  # truncated or garbage pickles raise many kinds of errors
        why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise StudioError(f"{path} is not a readable FLAME model pickle ({why})") from None

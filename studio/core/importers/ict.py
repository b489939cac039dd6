"""ICT-FaceKit (ICT Face Model Light, MIT) → PCAModel.

The model ships as OBJ files that all share one vertex order: ``generic_neutral_mesh.obj`` (the
mean), ``identityNNN.obj`` (neutral + one σ-scaled principal component) and one OBJ per ARKit-style
expression (neutral + blendshape). So mode_i = identity_i − neutral and a face is
neutral + Σ w_i · mode_i + Σ e_j · (expression_j − neutral), w ~ N(0, 1), e ∈ [0, 1].
Accepted sources: the ``FaceXModel`` folder (or the repository folder holding it), the
repository zip, or a tar archive of either.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from studio.core import archive, jsonio
from studio.core.errors import StudioError
from studio.core.facemodel import ModelMeta, ParamGroup
from studio.core.objio import read_obj, read_obj_vertices
from studio.core.pca import LinearGroup, PCAModel
from studio.core.progress import report, scaled
from studio.core.tempdirs import temp_folder

NEUTRAL = "generic_neutral_mesh.obj"
ATTRIBUTION = ("ICT Face Model Light from ICT-FaceKit (https://github.com/ICT-VGL/ICT-FaceKit), "
               "Copyright (c) 2020 USC Institute for Creative Technologies, MIT License.")
# Region tables of ICT's README (inclusive vertex ranges); parsed from the README that comes with
# the model when present, these are only the fallback for a bare FaceXModel folder.
_FALLBACK_REGIONS = {
    "face": (0, 9408), "head_and_neck": (9409, 11247), "mouth_socket": (11248, 13293),
    "eye_socket_left": (13294, 13677), "eye_socket_right": (13678, 14061),
    "gums_and_tongue": (14062, 17038), "teeth": (17039, 21450), "eyeball_left": (21451, 23020),
    "eyeball_right": (23021, 24590), "lacrimal_fluid_left": (24591, 24794),
    "lacrimal_fluid_right": (24795, 24998), "eye_blend_left": (24999, 25022),
    "eye_blend_right": (25023, 25046), "eye_occlusion_left": (25047, 25198),
    "eye_occlusion_right": (25199, 25350), "eyelashes_left": (25351, 26034),
    "eyelashes_right": (26035, 26718), "narrow_face_area": (0, 6705),
}


def load_ict(src: str | Path, name: str, progress=None) -> PCAModel:
    src = Path(src)
    if src.is_dir():
        return _load_folder(_find_model_folder(src), name, progress)
    with temp_folder("ict") as tmp:  # removed on errors and SIGTERM; swept at start-up after kill -9
        folder = _unpack(src, Path(tmp), scaled(progress, 0.0, 0.25))
        return _load_folder(folder, name, scaled(progress, 0.25, 1.0))


def _find_model_folder(src: Path) -> Path:
    for cand in (src, src / "FaceXModel"):
        if (cand / NEUTRAL).is_file():
            return cand
    raise StudioError(f"{src} holds no {NEUTRAL}: not an ICT-FaceKit FaceXModel folder")


def _unpack(src: Path, tmp: Path, progress) -> Path:
    """Extract only FaceXModel/* and the top-level README/LICENSE, by base name (no path tricks)."""
    out = tmp / "FaceXModel"
    out.mkdir()

    def target(member: str) -> Path | None:
        parts = Path(member).parts
        if len(parts) >= 2 and parts[-2] == "FaceXModel" and not parts[-1].startswith("."):
            return out / parts[-1]
        if parts and parts[-1] in ("README.md", "LICENSE") and "FaceXModel" not in parts and len(parts) <= 2:
            return tmp / parts[-1]
        return None

    archive.extract(src, target, progress)
    if not (out / NEUTRAL).is_file():
        raise StudioError(f"{src} holds no FaceXModel/{NEUTRAL}: not an ICT-FaceKit archive")
    return out


def _load_folder(folder: Path, name: str, progress) -> PCAModel:
    neutral = read_obj(folder / NEUTRAL)
    mean = neutral["vertices"]
    n = mean.shape[0]
    names = _names(folder, n)
    files = [(("shape", f"PC{i + 1}"), folder / f"{ident}.obj") for i, ident in enumerate(names["identities"])]
    files += [(("expression", e), folder / f"{e}.obj") for e in names["expressions"]]
    deltas: dict[str, list[np.ndarray]] = {"shape": [], "expression": []}
    for k, ((group, _label), path) in enumerate(files):
        if not path.is_file():
            raise StudioError(f"ICT-FaceKit file {path.name} is missing from {folder}")
        v = read_obj_vertices(path)
        if v.shape != mean.shape:
            raise StudioError(f"{path.name} has {v.shape[0]} vertices, the neutral mesh has {n}")
        deltas[group].append((v - mean).astype(np.float32))
        report(progress, (k + 1) / len(files), f"reading {path.name}")
    shape = ParamGroup("shape", tuple(f"PC{i + 1}" for i in range(len(deltas["shape"]))), "normal")
    expr = ParamGroup("expression", tuple(names["expressions"]), "box")
    linear = [LinearGroup(shape, np.stack(deltas["shape"])),
              LinearGroup(expr, np.stack(deltas["expression"]) if deltas["expression"]
                          else np.zeros((0, n, 3), np.float32))]
    readme = folder.parent / "README.md"
    regions = _regions(readme.read_text(errors="replace") if readme.is_file() else "", n)
    landmarks = {}
    if names["landmarks"] is not None:
        landmarks["ibug68"] = names["landmarks"]
    license_file = folder.parent / "LICENSE"
    attribution = ATTRIBUTION
    if license_file.is_file():
        attribution += "\n\n" + license_file.read_text(errors="replace").strip()
    meta = ModelMeta(unit="cm", regions=regions, landmarks=landmarks, attribution=attribution,
                     source="ICT-FaceKit FaceXModel")
    return PCAModel(name, mean, neutral["faces"], linear, None, neutral.get("uv"), neutral.get("face_uv"),
                    neutral.get("face_material"), tuple(neutral.get("materials") or ()), meta)


def _names(folder: Path, n: int) -> dict:
    """Identity and expression names from vertex_indices.json, else from the file names."""
    info = folder / "vertex_indices.json"
    doc = jsonio.expect(jsonio.read(info), dict, str(info)) if info.is_file() else {}
    identities = sorted(p.stem for p in folder.glob("identity[0-9][0-9][0-9].obj"))
    if not identities:
        raise StudioError(f"{folder} holds no identityNNN.obj files: not an ICT-FaceKit FaceXModel")
    expressions = doc.get("expressions")
    if isinstance(expressions, list):
        expressions = [_expression_name(e, info) for e in expressions]
    else:
        skip = {NEUTRAL, *(f"{i}.obj" for i in identities)}
        expressions = sorted(p.stem for p in folder.glob("*.obj") if p.name not in skip)
    return {"identities": identities, "expressions": expressions,
            "landmarks": _landmark_ids(doc.get("idx_to_landmark_verts"), n, info)}


# An expression name is the stem of an OBJ in the model folder: no separators, no "..", no drive,
# so a vertex_indices.json can never make the importer read a file outside the folder or archive.
_EXPRESSION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


def _expression_name(name, info: Path) -> str:
    if not isinstance(name, str) or not _EXPRESSION_NAME.fullmatch(name) or ".." in name:
        raise StudioError(f"{info}: expression name {str(name)[:80]!r} is not the name of an OBJ file "
                          "in the model folder")
    return name


def _landmark_ids(ids, n: int, info: Path) -> np.ndarray | None:
    """The 68 landmark vertex ids, or None when the file lists none (any other count is not iBUG-68)."""
    if ids is None or isinstance(ids, list) and len(ids) != 68:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n
                                            for i in ids):
        raise StudioError(f"{info}: idx_to_landmark_verts must be a list of vertex ids from 0 to {n - 1}")
    return np.asarray(ids, np.int32)


_ROW = re.compile(r"^\|\s*#\d+\s*\|\s*([^|]+?)\s*\|\s*\[(\d+):(\d+)\]\s*\|")


def _regions(readme: str, n: int) -> dict[str, np.ndarray]:
    """Vertex regions from the README tables ("| #0 | Face | [0:9408] | ..."); inclusive ranges.

    Individual teeth are folded into "teeth"; everything else keeps the README's names.
    """
    ranges: dict[str, tuple[int, int]] = {}
    for line in readme.splitlines():
        m = _ROW.match(line)
        if not m:
            continue
        label = re.sub(r"[^a-z0-9]+", "_", m.group(1).lower()).strip("_")
        if "molar" in label or "incisor" in label or "canine" in label or "bicuspid" in label:
            continue
        ranges.setdefault(label, (int(m.group(2)), int(m.group(3))))
    if "face" not in ranges:
        ranges = dict(_FALLBACK_REGIONS)
    return {k: np.arange(a, b + 1, dtype=np.int32) for k, (a, b) in ranges.items() if 0 <= a <= b < n}

"""The shipped neural head's slider labels (a table measured offline beside the checkpoint), its
smooth tri-plane lookup (the quadratic B-spline that removes the texel-line creases) and the SDF
normals its meshes carry."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.core.neural.model import smooth_planes

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "neural"
BARE = re.compile(r"^(ID|EX)\d+$")

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


@pytest.fixture(scope="module")
def shipped():
    from studio.core.neural.facemodel import load_neural

    return load_neural(SHIPPED, device="cpu")


def test_shipped_table_matches_the_checkpoint(shipped):
    from studio.core.neural.labels import TABLE_NAME, fingerprint

    table = json.loads((SHIPPED / TABLE_NAME).read_text())
    assert table["fingerprint"] == fingerprint(shipped)
    for g, k in (("identity", len(shipped.id_sigmas)), ("expression", len(shipped.ex_sigmas))):
        t = table["groups"][g]
        assert np.asarray(t["delta"]).shape == (k, len(t["measures"]))
        assert len(t["base"]) == len(t["noise"]) == len(t["measures"])
    assert (shipped.checkpoint.config.id_dim, shipped.checkpoint.config.ex_dim) == (64, 32)


def test_shipped_sliders_say_what_they_do(shipped):
    from studio.core.direction_labels import labels

    for group in shipped.groups:
        labs = labels(shipped, group.name)
        assert [lab.name for lab in labs] == list(group.names)
        assert not [lab.label for lab in labs if BARE.match(lab.label) or " · " not in lab.label]
        # the strongest directions name the proportions they change (tooltip: mm per σ); the weakest
        # may change none above the detection's noise, and say so
    ids = labels(shipped, "identity")
    assert all(lab.changes and "per +1σ" in lab.tooltip() for lab in ids[:8]), [lab.label for lab in ids[:8]]
    ex = labels(shipped, "expression")
    assert "mouth opening" in ex[0].label and "barely moves" in ex[-1].label  # EX1 is the mouth


def test_a_table_for_other_directions_is_ignored(shipped, tmp_path):
    """A table copied beside another checkpoint (other training, other sizes) gives plain names."""
    from studio.core.direction_labels import labels
    from studio.core.neural.checkpoint import save_checkpoint
    from studio.core.neural.config import tiny_config
    from studio.core.neural.facemodel import load_neural, untrained_checkpoint
    from studio.core.neural.labels import TABLE_NAME

    save_checkpoint(tmp_path / "neural_head.safetensors", untrained_checkpoint(tiny_config(), seed=1))
    shutil.copy(SHIPPED / TABLE_NAME, tmp_path / TABLE_NAME)
    other = load_neural(tmp_path, device="cpu")
    for group in other.groups:
        assert [lab.label for lab in labels(other, group.name)] == list(group.names)


def test_smooth_planes_is_the_quadratic_bspline():
    torch.manual_seed(0)
    p = torch.randn(1, 3, 2, 16, 16, dtype=torch.float64)
    u = 4
    s = smooth_planes(p, u)
    assert s.shape == (1, 3, 2, 61, 61)
    # on a texel centre: (c[j-1] + 6 c[j] + c[j+1]) / 8 along each axis; midway: (c[j] + c[j+1]) / 2
    c = p[0, 0, 0]
    row = (c[4] + 6 * c[5] + c[6]) / 8
    assert torch.allclose(s[0, 0, 0, 5 * u, 7 * u], (row[6] + 6 * row[7] + row[8]) / 8)
    row = (c[5] + c[6]) / 2
    assert torch.allclose(s[0, 0, 0, 5 * u + u // 2, 7 * u], (row[6] + 6 * row[7] + row[8]) / 8)
    # constants and linear ramps are kept (away from the clamped border)
    assert torch.allclose(smooth_planes(torch.full((1, 3, 1, 8, 8), 2.5), u), torch.tensor(2.5))
    ramp = torch.arange(16.0).expand(1, 3, 1, 16, 16)
    assert torch.allclose(smooth_planes(ramp, u)[..., 2 * u:-2 * u], torch.arange(2 * u, 15 * u - 2 * u + 1) / u)


def test_smooth_lookup_has_no_crease_on_texel_lines():
    """The SDF's slope across a texel line jumps under bilinear lookup and (nearly) not once smoothed."""
    from studio.core.neural.model import sample_planes

    torch.manual_seed(1)
    planes = torch.randn(1, 3, 1, 16, 16)
    texel = 2.0 / 15
    x0 = -1 + 7 * texel  # a texel line of the xy and xz planes' columns
    h = 1e-3
    xs = torch.tensor([x0 - 2 * h, x0 - h, x0, x0 + h, x0 + 2 * h])
    pts = torch.stack([xs, torch.full_like(xs, 0.123), torch.full_like(xs, -0.31)], -1)[None]

    def slope_jump(pl):
        f = sample_planes(pl, pts)[0, :, 0]
        return float(abs((f[4] - f[3]) - (f[1] - f[0])) / h)

    rough, smooth = slope_jump(planes), slope_jump(smooth_planes(planes, 8))
    half = slope_jump(smooth_planes(planes, 8, 0.5))  # the studio's: a half-texel box, softer
    assert rough > 1.0 and smooth < 0.2 * rough and half < 0.5 * rough, (rough, smooth, half)


def test_meshes_carry_the_fields_normals(shipped):
    """The shipped head's meshes come with its SDF's unit normals, which agree with the triangles'
    (posed by an expression too); the preview keeps the triangles' own."""
    from studio.core.geometry import vertex_normals

    p = shipped.zeros()
    p["expression"][0] = 2.0
    for params in (shipped.zeros(), p):
        mesh = shipped.mesh(params, resolution=96)
        assert mesh.normals is not None and mesh.normals.shape == mesh.vertices.shape
        assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-4)
        dots = (mesh.normals * vertex_normals(mesh.vertices, mesh.faces)).sum(1)
        assert np.degrees(np.arccos(np.median(dots))) < 3.0 and np.mean(dots < 0.5) < 0.02
    assert shipped.preview_mesh(p).normals is None


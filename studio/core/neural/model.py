"""The neural parametric head model (NPHM-style): a tri-plane SDF identity model and a forward
expression deformation field.

Identity.  ``F_id(x, z_id) = TPdec([Σ_p bilinear(TPgen(z_id)_p, π_p(x)), x])`` is the signed distance
at a canonical (neutral-expression) point ``x``. ``TPgen`` is a DCGAN-style generator (a linear layer
to a small feature map, then transposed convolutions doubling it) producing three C×R×R feature
planes (xy, xz, yz); a point's feature is the sum of the three bilinear samples of its projections;
``TPdec`` is a small MLP with softplus(β=100) activations and geometric initialisation (the untrained
SDF is a sphere), so the field starts as a valid SDF.

Expression.  ``F_ex(x, z_ex, z_id) = Δx`` is a *forward* deformation: a canonical point ``x`` moves
to ``x + Δx`` in the posed head. So a posed mesh is obtained exactly and cheaply: extract the
canonical (neutral) mesh once per identity by marching cubes on ``sdf`` and move its vertices by
``deform`` (a few tens of thousands of MLP queries, not a volume). Posed SDF queries, when needed,
find the canonical pre-image of a posed point ``x_p`` by iterative root finding of
``x_c + Δ(x_c) = x_p`` (``posed_sdf``: fixed-point/Newton-free iterations ``x_c ← x_p − Δ(x_c)``,
which converge because the learned deformations are small and smooth) and return ``sdf(x_c)``.

Units: ``x`` is in normalised model units, ``[-1, 1]^3``; the checkpoint stores ``center``/``scale``
with ``x_mm = x * scale + center``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from studio.core.neural.config import NeuralConfig


class _SoftplusFn(torch.autograd.Function):
    """softplus_β with a hand-written derivative σ(βx): autograd's own derivative of logaddexp gives NaN
    in the second derivative for βx ≪ 0 (0 · inf), which the eikonal/normal losses need. The backward
    below is made of differentiable ops, so it can be differentiated again."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # β = 100 needs fp32 under autocast
    def forward(ctx, x, beta):
        ctx.save_for_backward(x)
        ctx.beta = beta
        return torch.logaddexp(x * beta, x.new_zeros(())) / beta

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x * ctx.beta), None


def softplus(x: Tensor, beta: float = 100.0) -> Tensor:
    """Exact softplus_β(x) = log(1 + exp(βx)) / β, evaluated as logaddexp(βx, 0) / β.

    Measured on 2 cores (40k × 64 floats, eager): ``F.softplus(x, beta=100)`` 25 ms, this 12 ms, a
    64×64 matmul of the same rows 11 ms. It is exact (no threshold switch) and twice differentiable.
    """
    return _SoftplusFn.apply(x, float(beta))


class Softplus(nn.Module):
    def __init__(self, beta: float = 100.0):
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: Tensor) -> Tensor:
        return softplus(x, self.beta)


class TriPlaneGenerator(nn.Module):
    """z → three C×R×R planes: linear → base² map → (2× transposed conv, LeakyReLU)* → 3×3 conv."""

    def __init__(self, cfg: NeuralConfig):
        super().__init__()
        ch = cfg.gen_channels
        self.base_res = cfg.gen_base_res
        self.c0 = ch[0]
        self.fc = nn.Linear(cfg.id_dim, ch[0] * self.base_res ** 2)
        ups = []
        for a, b in zip(ch[:-1], ch[1:]):
            ups += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(ch[-1], 3 * cfg.plane_channels, 3, padding=1)
        self.channels = cfg.plane_channels
        nn.init.normal_(self.out.weight, std=0.1 / math.sqrt(ch[-1] * 9))
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # a Conv2d made with its bias

    def forward(self, z: Tensor) -> Tensor:
        h = F.leaky_relu(self.fc(z), 0.2).view(z.shape[0], self.c0, self.base_res, self.base_res)
        p = self.out(self.ups(h))
        r = p.shape[-1]
        return p.view(z.shape[0], 3, self.channels, r, r)


def sample_planes(planes: Tensor, x: Tensor) -> Tensor:
    """Sum of bilinear samples of the xy, xz, yz planes at the projections of x.

    planes (B, 3, C, R, R), x (B, N, 3) in [-1, 1] → (B, N, C). Texel centres span [-1, 1]
    (align_corners=True); outside, the border value is repeated.
    """
    b, _, c, r, _ = planes.shape
    n = x.shape[1]
    # grid_sample takes (u, v) = (column, row) coordinates.
    uv = torch.stack([x[..., [0, 1]], x[..., [0, 2]], x[..., [1, 2]]], dim=1)  # (B, 3, N, 2)
    feats = F.grid_sample(planes.reshape(b * 3, c, r, r), uv.reshape(b * 3, 1, n, 2), mode="bilinear",
                          padding_mode="border", align_corners=True)  # (B*3, C, 1, N)
    return feats.view(b, 3, c, n).sum(dim=1).transpose(1, 2)


def _smoothed_tent(t: Tensor, width: float = 1.0) -> Tensor:
    """The tent of bilinear interpolation convolved with a box ``width`` texels wide (0 < width ≤ 1):
    C¹, support ±(1 + width/2); width 1 is the quadratic B-spline β₂."""
    def integral(x):  # ∫ tent from −∞ to x
        x = x.clamp(-1.0, 1.0)
        return torch.where(x < 0, 0.5 * (x + 1) ** 2, 1 - 0.5 * (1 - x) ** 2)
    return (integral(t + width / 2) - integral(t - width / 2)) / width


@functools.lru_cache(maxsize=8)
def _smoothing_matrix(r: int, u: int, width: float) -> Tensor:
    """(U(r−1)+1, r): fine node i ↦ the weights k(i/u − j) of control points j (border clamped)."""
    pos = torch.arange((r - 1) * u + 1, dtype=torch.float64) / u
    j = torch.arange(-2, r + 2, dtype=torch.float64)
    w = _smoothed_tent(pos[:, None] - j[None, :], width)
    m = torch.zeros(len(pos), r, dtype=torch.float64)
    m.index_add_(1, j.long().clamp(0, r - 1), w)
    return m


def smooth_planes(planes: Tensor, upsample: int, width: float = 1.0) -> Tensor:
    """The tri-planes' quadratic B-spline surfaces (texels as control points, the border texel
    repeated), sampled ``upsample``× finer: (B, 3, C, R, R) → (B, 3, C, U(R−1)+1, U(R−1)+1) on the
    same [-1, 1] span (every U-th node lies on a texel centre).

    Why: bilinear lookup makes the SDF continuous but not smooth across every texel line, so the
    learned 64² planes put a crease into the surface every 8.4 mm (the neural head's vertical
    banding). The B-spline is C¹ and, being approximating, damps the planes' texel-scale
    (Nyquist) ripple to half instead of passing it through as an interpolating bicubic does;
    bilinear lookup of its fine samples leaves kinks ``upsample``× closer and smaller. Linear in the
    planes, so differentiable; two matrix products per code (~10 ms on one core at 64² → 253²).
    ``width`` < 1 smooths less (the tent convolved with a narrower box; still C¹): closer to the
    bilinear surface the weights were trained for, with softer creases left."""
    b, p, c, r, _ = planes.shape
    m = _smoothing_matrix(r, int(upsample), float(width)).to(planes.device, planes.dtype)  # (n, r)
    out = m @ planes.reshape(b * p * c, r, r) @ m.T  # dense, but BLAS beats 3-tap gathers here
    n = m.shape[0]
    return out.reshape(b, p, c, n, n).contiguous()


def _mlp(d_in: int, hidden: int, layers: int, d_out: int, beta: float) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), Softplus(beta)]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


class NeuralHead(nn.Module):
    """Identity SDF (tri-planes + MLP decoder) and forward expression deformation field."""

    def __init__(self, config: NeuralConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.generator = TriPlaneGenerator(config)
        self.decoder = _mlp(config.plane_channels + 3, config.dec_hidden, config.dec_layers, 1,
                            config.softplus_beta)
        self.deformer = _mlp(3 + config.ex_dim + config.id_dim, config.def_hidden, config.def_layers, 3,
                             config.softplus_beta)
        self._geometric_init()

    def _geometric_init(self) -> None:
        """SAL/IGR geometric initialisation: the decoder starts as the SDF of a sphere (features ignored
        at first: their input weights start at zero), the deformation starts at Δ = 0."""
        lins = [m for m in self.decoder if isinstance(m, nn.Linear)]
        c = self.config.plane_channels
        for i, lin in enumerate(lins):
            out_dim, in_dim = lin.weight.shape
            if i == len(lins) - 1:
                nn.init.normal_(lin.weight, mean=math.sqrt(math.pi) / math.sqrt(in_dim), std=1e-4)
                nn.init.constant_(lin.bias, -self.config.init_radius)
            else:
                nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0) / math.sqrt(out_dim))
                nn.init.zeros_(lin.bias)
                if i == 0:
                    with torch.no_grad():
                        lin.weight[:, :c] = 0.0
        last = [m for m in self.deformer if isinstance(m, nn.Linear)][-1]
        nn.init.normal_(last.weight, std=1e-5)
        nn.init.zeros_(last.bias)

    # 0: planes as generated, sampled bilinearly (training, and how the shipped weights were
    # trained); k > 0: their C¹ smoothing (``smooth_planes``, box ``plane_smoothing_width`` texels) at
    # k× resolution, which the studio's model (``NeuralFaceModel``) sets for extraction and fitting alike.
    plane_smoothing: int = 0
    plane_smoothing_width: float = 1.0

    def planes(self, z_id: Tensor) -> Tensor:
        """(B, D_id) → (B, 3, C, R, R) tri-planes (R upsampled when ``plane_smoothing``)."""
        p = self.generator(z_id)
        return smooth_planes(p, self.plane_smoothing, self.plane_smoothing_width) if self.plane_smoothing else p

    def sdf(self, x: Tensor, planes: Tensor) -> Tensor:
        """Signed distance (normalised units, negative inside) at canonical x (B, N, 3) → (B, N)."""
        feats = sample_planes(planes, x)
        return self.decoder(torch.cat([feats, x], dim=-1)).squeeze(-1)

    def deform(self, x: Tensor, z_ex: Tensor, z_id: Tensor) -> Tensor:
        """Forward offsets Δx (B, N, 3) moving canonical x (B, N, 3) to the pose z_ex (B, D_ex)."""
        b, n, _ = x.shape
        cond = torch.cat([z_ex, z_id], dim=-1)[:, None, :].expand(b, n, -1)
        return self.deformer(torch.cat([x, cond], dim=-1))

    def posed_sdf(self, x_posed: Tensor, planes: Tensor, z_ex: Tensor, z_id: Tensor,
                  iterations: int = 8) -> Tensor:
        """SDF at posed points by inverting the forward field: x_c ← x_p − Δ(x_c), then sdf(x_c)."""
        xc = x_posed
        for _ in range(iterations):
            xc = x_posed - self.deform(xc, z_ex, z_id)
        return self.sdf(xc, planes)

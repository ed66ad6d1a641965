"""The multi-level interactive module (paper sec. 3.6): what a query reads from the video at its points.

Two levels, as PointTAD's decoder layer:

- point level, :class:`DeformableSampling` (eqs. 9-11; PointTAD's ``PointDeformation``): around each
  query point, ``s`` sub-points at offsets predicted from the query vector; the features there are read by
  linear interpolation and averaged with softmax weights, also predicted from the query vector.
- instance level, :class:`DynamicMixing` (eqs. 12-15; PointTAD's ``ParallelMixing``): a dynamic
  convolution whose weights are generated per query from its query vector; a frame mix across the p point
  features and a channel mix across the d channels, concatenated and fused back to one vector per query.

Shapes: b batch, t feature steps of the window, d hidden size, q queries, p points per query,
s sub-points per point, m width of the channel mix (``mix_dim``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn


def sample_features(features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Read features at fractional positions by linear interpolation (the sampling of eq. 9).

    Position 0 is the first feature step and 1 the last (``align_corners=True``): position x reads index
    ``x * (t - 1)``, mixing its two neighbours linearly. Positions outside [0, 1] read zeros beyond the
    ends (``padding_mode="zeros"``), as PointTAD's ``bilinear_sampling``; its callers clamp to [0, 1].

    Args:
        features: (b, t, d) one window's features.
        positions: (b, ...) positions in [0, 1], any trailing shape.

    Returns:
        (b, ..., d) the interpolated features.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (b, t, d), got {tuple(features.shape)}")
    if positions.shape[0] != features.shape[0]:
        raise ValueError(
            f"positions {tuple(positions.shape)} and features {tuple(features.shape)} differ in batch size"
        )
    trailing = positions.shape[1:]
    x = rearrange(positions, "b ... -> b 1 (...)")
    # grid_sample reads a (b, d, 1, t) image; y = 0 is its only row, x in [-1, 1] spans the t steps
    grid = torch.stack((2 * x - 1, torch.zeros_like(x)), dim=-1)
    image = rearrange(features, "b t d -> b d 1 t")
    sampled = F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    return rearrange(sampled, "b d 1 n -> b n d").reshape(features.shape[0], *trailing, features.shape[-1])


class DeformableSampling(nn.Module):
    """Point-level local features: eqs. 9-11, PointTAD's ``PointDeformation``.

    For query i and its point j at position x_ij, with query vector v_i (eqs. 10-11)::

        offsets_i = W_off v_i + b_off          (s values, in feature steps)
        weights_i = softmax(W_w v_i + b_w)     (s values)
        f_ij = sum_k weights_ik * F(clamp(x_ij + offsets_ik / t, 0, 1))      (eq. 9)

    with F the window's features read by :func:`sample_features`. The first ``boundary_points`` points
    share one pair of heads, ``groups["boundary"]["offsets"]`` and ``groups["boundary"]["weights"]``
    (PointTAD's ``boundary_offsets``, ``boundary_weights``), the rest another, ``groups["centre"]["offsets"]``
    and ``groups["centre"]["weights"]`` (PointTAD's ``center_offsets``, ``center_weights``); a group with
    no points (``boundary_points`` 0 or p) has no heads. Within a group all points of a query use the
    same offsets and weights.

    Initialisation (PointTAD's stated intent, kept): the heads' weights are zero, the offset biases are
    1, 2, ..., s (sub-points 1..s steps after the point) and the weight biases zero (uniform weights).
    PointTAD's decoder-wide Xavier pass later overwrites those zero weights with random ones; mgtutor
    does not, so at initialisation every query reads the same sub-points with equal weights, and the
    query vector steers them only as learning asks.

    Two details of PointTAD's code kept on purpose: the offsets are divided by t (so one "step" moves
    (t - 1) / t feature steps once positions are mapped to indices ``x * (t - 1)``), and the clamp to
    [0, 1] stops the gradient to a sub-point pushed past the window's ends.
    """

    def __init__(self, hidden: int, points: int, subpoints: int = 4, boundary_points: int = 4) -> None:
        super().__init__()
        if not 0 <= boundary_points <= points:
            raise ValueError(f"boundary_points must lie in 0..{points}, got {boundary_points}")
        self.points = points
        self.subpoints = subpoints
        self.boundary_points = boundary_points
        self.groups = nn.ModuleDict()
        for name, size in (("boundary", boundary_points), ("centre", points - boundary_points)):
            if size:
                self.groups[name] = nn.ModuleDict(
                    {"offsets": nn.Linear(hidden, subpoints), "weights": nn.Linear(hidden, subpoints)}
                )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for heads in self.groups.values():
            nn.init.zeros_(heads["offsets"].weight)
            with torch.no_grad():
                heads["offsets"].bias.copy_(torch.arange(1, self.subpoints + 1, dtype=torch.float32))
            nn.init.zeros_(heads["weights"].weight)
            nn.init.zeros_(heads["weights"].bias)

    def subpoint_positions(
        self, query: torch.Tensor, points: torch.Tensor, steps: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each point's sub-points are and how much each counts (eqs. 10-11).

        Args:
            query: (b, q, d) query vectors.
            points: (b, q, p) query points in [0, 1].
            steps: t, the number of feature steps of the window.

        Returns:
            positions (b, q, p, s) in [0, 1] and weights (b, q, p, s), summing to 1 over s.
        """
        if points.shape[-1] != self.points:
            raise ValueError(f"expected {self.points} points per query, got {points.shape[-1]}")
        sizes = {"boundary": self.boundary_points, "centre": self.points - self.boundary_points}
        offsets, weights = [], []
        for name, heads in self.groups.items():
            offsets.append(heads["offsets"](query).unsqueeze(2).expand(-1, -1, sizes[name], -1))
            weights.append(heads["weights"](query).softmax(dim=-1).unsqueeze(2).expand(-1, -1, sizes[name], -1))
        offsets = torch.cat(offsets, dim=2)
        positions = (points.unsqueeze(-1) + offsets / steps).clamp(0.0, 1.0)
        return positions, torch.cat(weights, dim=2)

    def forward(self, query: torch.Tensor, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Point features of every query point (eq. 9).

        Args:
            query: (b, q, d) query vectors (PointTAD uses the layer's incoming, pre-attention ones).
            features: (b, t, d) the window's features.
            points: (b, q, p) query points in [0, 1].

        Returns:
            (b, q, p, d) one feature vector per query point.
        """
        positions, weights = self.subpoint_positions(query, points, features.shape[1])
        sampled = sample_features(features, positions)
        return einsum(sampled, weights, "b q p s d, b q p s -> b q p d")


class DynamicMixing(nn.Module):
    """Instance-level semantic mixing: eqs. 12-15, PointTAD's ``ParallelMixing`` (a dynamic convolution).

    From query vector v (eq. 12) two generators make per-query weights::

        W1 (d x m), W2 (m x d) = channel_generator(v)     (PointTAD's ``dynamic_layer``)
        T (p x p)              = frame_generator(v)       (PointTAD's ``dynamic_temp_layer``)

    and with the query's point features X (p x d)::

        frame   = ReLU(LN_p(X^T T))^T                      (eq. 13; LN across the p points)
        channel = ReLU(LN_d(ReLU(LN_m(X W1)) W2))          (eq. 14)
        out     = ReLU(LN_d(fuse(flatten([channel, frame]))))   (eq. 15; concat on channels, p x 2d -> d)

    The channel generator is the model's largest piece: d * 2dm weights (33.6M at d = 512, m = 64), and
    ``fuse`` has 2pd * d (15.7M at p = 30): about 50M parameters a layer. The mixing itself is batched
    over queries (einsum), never a loop. All Linear weights get Xavier-uniform as PointTAD's decoder-wide
    pass; biases keep PyTorch's default.
    """

    def __init__(self, hidden: int, points: int, mix_dim: int = 64) -> None:
        super().__init__()
        self.hidden = hidden
        self.points = points
        self.mix_dim = mix_dim
        self.channel_generator = nn.Linear(hidden, 2 * hidden * mix_dim)
        self.frame_generator = nn.Linear(hidden, points * points)
        self.channel_norm_in = nn.LayerNorm(mix_dim)
        self.channel_norm_out = nn.LayerNorm(hidden)
        self.frame_norm = nn.LayerNorm(points)
        self.fuse = nn.Linear(2 * points * hidden, hidden)
        self.fuse_norm = nn.LayerNorm(hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.channel_generator, self.frame_generator, self.fuse):
            nn.init.xavier_uniform_(linear.weight)

    def dynamic_weights(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 12: (b, q, d) -> W1 (b, q, d, m), W2 (b, q, m, d), T (b, q, p, p).

        The generator's output is cut as PointTAD's ``view``s cut it: first d*m values row-major into W1,
        the next m*d into W2; T row-major (T[i, j] mixes point i into point j).
        """
        d, m, p = self.hidden, self.mix_dim, self.points
        first, second = self.channel_generator(query).split(d * m, dim=-1)
        w1 = rearrange(first, "b q (d m) -> b q d m", d=d, m=m)
        w2 = rearrange(second, "b q (m d) -> b q m d", m=m, d=d)
        frame = rearrange(self.frame_generator(query), "b q (i j) -> b q i j", i=p, j=p)
        return w1, w2, frame

    def frame_mix(self, point_features: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Eq. 13: (b, q, p, d) features, (b, q, p, p) T -> (b, q, p, d), mixed across points."""
        mixed = einsum(point_features, frame, "b q i d, b q i j -> b q d j")
        mixed = F.relu(self.frame_norm(mixed))
        return rearrange(mixed, "b q d p -> b q p d")

    def channel_mix(self, point_features: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        """Eq. 14: (b, q, p, d) features -> d -> m -> d per query -> (b, q, p, d)."""
        inner = F.relu(self.channel_norm_in(einsum(point_features, w1, "b q p d, b q d m -> b q p m")))
        return F.relu(self.channel_norm_out(einsum(inner, w2, "b q p m, b q m d -> b q p d")))

    def forward(self, query: torch.Tensor, point_features: torch.Tensor) -> torch.Tensor:
        """Eqs. 12-15: (b, q, d) query vectors, (b, q, p, d) point features -> (b, q, d) instance features."""
        if point_features.shape[-2:] != (self.points, self.hidden):
            raise ValueError(
                f"point features must be (b, q, {self.points}, {self.hidden}), got {tuple(point_features.shape)}"
            )
        w1, w2, frame = self.dynamic_weights(query)
        channel = self.channel_mix(point_features, w1, w2)
        frames = self.frame_mix(point_features, frame)
        both = rearrange(torch.cat((channel, frames), dim=-1), "b q p e -> b q (p e)")
        return F.relu(self.fuse_norm(self.fuse(both)))

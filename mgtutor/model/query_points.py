"""Learnable query points: where each query looks, and how each decoder layer moves it (paper sec. 3.4, eq. 1).

A query describes one action instance by ``p`` points on the window's timeline (normalised to [0, 1]),
not by a (start, end) pair. The first two-thirds of the points locate the instance (their min and max are
its start and end); the last third are free "semantic" points that may sit wherever the evidence is.

- :func:`initial_points`: where the points start: all at 0.5 (the window's middle, PointTAD's
  ``init_proposal_points``) or spread over the window, one short segment a query (``model.initial_points``).
- :class:`QueryPoints`: the learnable table of initial points, as PointTAD's ``init_proposal_points`` embedding.
- :func:`points_to_segments`: points -> (start, end), PointTAD's ``util.ops.convert``.
- :class:`PointOffsetHead`: per-layer offsets from the query vectors, PointTAD's ``reg_module`` +
  ``points_delta``.
- :func:`refine_points`: the scaled update of eq. 1, PointTAD's ``apply_deltas``.

Shapes: b batch, q queries, p points per query, d hidden size.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from einops import repeat
from torch import nn


def localisation_points(num_points: int) -> int:
    """How many leading points locate the segment: PointTAD's ``points[..., :-P//3]``.

    Python reads ``-P//3`` as ``(-P)//3``, a floor of a negative number, so the slice keeps
    ``P - ceil(P/3) = floor(2P/3)`` points: 20 of 30, 20 of 31, 21 of 32, 14 of 21 (MultiTHUMOS), 10 of 15
    (Charades). ``P - P//3`` would differ whenever P is not a multiple of 3.
    """
    if num_points < 3:
        raise ValueError(f"a query needs at least 3 points (two-thirds of them locate the segment), got {num_points}")
    return (2 * num_points) // 3


def points_to_segments(points: torch.Tensor) -> torch.Tensor:
    """The pseudo-segment of each query: min and max of its first two-thirds of points.

    Args:
        points: (..., p) positions in the window, normalised to [0, 1].

    Returns:
        (..., 2) ``(start, end)``; start <= end.

    Mirrors PointTAD's ``util.ops.convert`` (which then returns (centre, length); mgtutor keeps
    (start, end), the project's convention). ``torch.min``/``torch.max`` route the gradient to one point
    even when several are equal; ``amin``/``amax`` would share it evenly, so points that start equal
    (all at 0.5) would receive equal gradients from the segment loss and could never separate through it.
    """
    located = points[..., : localisation_points(points.shape[-1])]
    return torch.stack((located.min(dim=-1).values, located.max(dim=-1).values), dim=-1)


def refine_points(points: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """One layer's update of the query points (paper eq. 1; PointTAD's ``apply_deltas``).

    ``points + deltas * 0.5 * length``, where ``length = end - start`` of the pseudo-segment of the
    *incoming* points (:func:`points_to_segments`). A short instance takes small steps, a long one large
    steps. No sigmoid, no clamp, no detach, as in PointTAD.

    Because the step is scaled by the length, points that all sit at one place (length 0: the middle
    start, :func:`initial_points`) do not move through this update, and the gradient says the same:

    - to ``deltas``: ``0.5 * length``, zero for such a query, so the offset head learns nothing from it;
    - to ``points``: the identity plus ``deltas * 0.5 * d length / d points``. With the zero-initialised
      offset head (:class:`PointOffsetHead`) ``deltas`` is 0, so the term through the length vanishes;
      and where a query's points coincide, ``d length / d points`` is itself 0 (``torch.min`` and
      ``torch.max`` pick the same point, :func:`points_to_segments`), whatever the head.

    Coinciding points therefore move only through the identity: the segment loss reaches the one point
    that is both start and end (it moves the segment's centre; the length and tIoU terms give it no
    gradient), and the sampled features reach every point. Once a point has moved the length is no longer
    0, and from then on eq. 1 and the offset head take over.

    Args:
        points: (b, q, p) incoming points.
        deltas: (b, q, p) offsets predicted from the query vectors.

    Returns:
        (b, q, p) refined points.
    """
    if points.shape != deltas.shape:
        raise ValueError(f"points {tuple(points.shape)} and deltas {tuple(deltas.shape)} must have the same shape")
    start, end = points_to_segments(points).unbind(-1)
    length = (end - start).unsqueeze(-1)
    return points + deltas * 0.5 * length


InitialPoints = Literal["middle", "spread"]  # model.initial_points
INITIAL_POINTS: tuple[str, ...] = get_args(InitialPoints)


def initial_points(queries: int, points: int, how: str = "middle") -> torch.Tensor:
    """The (q, p) table the query points start from.

    - ``"middle"``: every point at 0.5, PointTAD's ``nn.init.constant_(init_proposal_points.weight, 0.5)``
      (models/pointtad.py) and the paper's start. Every query's pseudo-segment is then the same
      zero-length segment (0.5, 0.5): eq. 1's update, scaled by the length, cannot move the points, and
      the first decoder layer predicts that one segment for every query of every window.
    - ``"spread"``: query i covers its own part of the window, ``[i / q, (i + 1) / q]`` (the q segments
      tile the window): its localisation points evenly from ``i / q`` to ``(i + 1) / q``, its semantic
      points evenly inside. Every query starts with a distinct segment of length 1 / q, so eq. 1 moves
      the points from the first layer on, and each query first reads its own part of the video.

    Deterministic: building either table draws no random numbers.

    Returns:
        (q, p) float32 positions in [0, 1].
    """
    if how not in INITIAL_POINTS:
        raise ValueError(f"initial points must be one of {INITIAL_POINTS}, got {how!r}")
    located = localisation_points(points)
    if how == "middle":
        return torch.full((queries, points), 0.5)
    start = torch.arange(queries, dtype=torch.float64)[:, None] / queries  # (q, 1)
    # localisation points span the segment end to end; semantic points sit evenly inside it
    ends = torch.linspace(0, 1, located, dtype=torch.float64)
    inside = torch.linspace(0, 1, points - located + 2, dtype=torch.float64)[1:-1]
    return (start + torch.cat((ends, inside)) / queries).float()


class QueryPoints(nn.Module):
    """The initial query points: a learnable (q, p) table, set by :func:`initial_points`.

    PointTAD's ``init_proposal_points`` (an ``nn.Embedding`` set to 0.5); the same tensor here as
    ``weight``. ``how``: ``"middle"`` (PointTAD's, the default) or ``"spread"``.
    """

    def __init__(self, queries: int, points: int, how: str = "middle") -> None:
        super().__init__()
        self.weight = nn.Parameter(initial_points(queries, points, how))

    def forward(self, batch: int) -> torch.Tensor:
        """(q, p) -> (batch, q, p): every window starts from the same learnt points."""
        return repeat(self.weight, "q p -> b q p", b=batch)


class PointOffsetHead(nn.Module):
    """Offsets of a query's points from its query vector (PointTAD's ``reg_module`` + ``points_delta``).

    Three blocks of [Linear without bias, LayerNorm, ReLU] at width d, then ``delta``: Linear(d -> p).
    The paper (sec. 3.4) says the points of one layer reach the next "after passing through a layer of
    FFN"; in PointTAD's code that FFN is this head, applied to the query vectors after the layer's FFN
    (the points themselves pass through no network).

    Initialisation (deliberate, see :meth:`reset_parameters`): the hidden Linears are Xavier-uniform as
    PointTAD's decoder-wide Xavier pass makes them; ``delta`` (weight and bias) starts at zero, so at
    initialisation every layer passes the points through unchanged, whatever the start. It also means
    (:func:`refine_points`) that the refined points' gradient with respect to the incoming points is
    the identity, nothing through the segment length, until the head has learnt non-zero offsets; and
    the head's own gradient is proportional to the incoming segment's length, so a layer whose incoming
    points coincide (the middle start) trains its head only once the points have separated.
    PointTAD's Xavier pass gives ``delta`` random weights (and PyTorch's default bias) instead. From the
    middle start the first forward pass is the same either way (length 0), and so is the gradient while
    a query's points coincide; from the spread start PointTAD's head would move the points from the first
    pass on, mgtutor's leaves them in place until learning moves them.
    """

    def __init__(self, hidden: int, points: int, depth: int = 3) -> None:
        super().__init__()
        blocks = []
        for _ in range(depth):
            blocks += [nn.Linear(hidden, hidden, bias=False), nn.LayerNorm(hidden), nn.ReLU()]
        self.hidden = nn.Sequential(*blocks)
        self.delta = nn.Linear(hidden, points)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.hidden:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """(b, q, d) query vectors -> (b, q, p) point offsets (in units of half the segment length)."""
        return self.delta(self.hidden(query))

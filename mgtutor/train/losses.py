"""PointTAD's set-prediction loss (``models/pointtad.py``, ``SetCriterion``, after DETR).

For each window the queries are first matched one-to-one to the ground-truth gestures
(:mod:`mgtutor.train.matching`); then, per decoder layer l (matching redone for each layer):

- ``class``: softmax cross-entropy over k + 1 classes, every query against its matched label or, when
  unmatched, "no object" (index k); the no-object class has weight ``no_object_weight`` (0.1), and the mean
  is the weighted mean of ``F.cross_entropy(weight=...)`` (sum of weighted terms / sum of weights).
- ``l1``: ``|centre - centre*| + |length - length*|`` summed over matched queries, divided by N.
- ``iou``: ``1 - tIoU(clamp(segment, 0, 1), segment*)`` summed over matched queries, divided by N.

N is the number of ground-truth segments in the batch, summed over all processes when torch.distributed is
initialised and divided by the number of processes, at least 1 (DETR's ``num_boxes``). The last layer also
gets

- ``dense``: binary cross-entropy with logits between the dense head's (b, t, k) output and per-step
  multi-hot targets (:func:`dense_targets`), averaged over all b * t * k entries.

The returned dict holds each unweighted term, the last layer's under its plain name and each supervised
earlier decoder layer i's as ``class_i``, ``l1_i``, ``iou_i``, and ``total`` = the weighted sum
(``class_weight``, ``l1_weight``, ``iou_weight``, ``dense_weight`` of :class:`~mgtutor.config.TrainConfig`,
the same weights on every layer as PointTAD). Which earlier layers are supervised
(:func:`auxiliary_layers`):

- ``aux_loss`` false: none;
- ``aux_layers: all``: every one, i = 0 .. L-2, as PointTAD's docstring ("loss at each decoder layer")
  and its loss weights (one set for each of the L-1 layers) intend;
- ``aux_layers: pointtad``: what PointTAD's code computes. Its ``_set_aux_loss`` (models/pointtad.py)
  builds the auxiliary outputs with ``zip(outputs_class[:-1], outputs_coord[:-1], logits)``, where
  ``logits`` is the dense head's (b, t, k) output: zip walks it window by window and stops at the
  shorter sequence, so only layers 0 .. min(L-1, b)-1 are supervised. At the paper's batch of 1 that
  is layer 0 and the last; at PointTAD's own batches (3 a GPU on MultiTHUMOS, 2 on Charades, with
  L = 4) every layer, and every layer but layer 2.

The set of keys depends only on the configuration and the output's shape (with ``pointtad``, on the
batch size too, as in PointTAD), never on the ground truth, so processes (which share one batch
size) can average them together.

Windows without ground truth: every query is trained towards "no object" and the segment terms get nothing
from that window (PointTAD returns a zero loss when a whole batch has no ground truth; its training windows
never do, and neither do mgtutor's).

Shapes: L decoder layers, b windows, q queries, k classes, t feature steps, g ground-truth segments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mgtutor.config import TrainConfig
from mgtutor.model.segments import segment_iou, to_centre_length
from mgtutor.train.matching import match_batch

AuxLayers = Literal["all", "pointtad"]  # train.aux_layers
AUX_LAYERS: tuple[str, ...] = get_args(AuxLayers)

if TYPE_CHECKING:
    from mgtutor.model.detector import DetectorOutput

Target = dict[str, torch.Tensor]
Matches = list[tuple[torch.Tensor, torch.Tensor]]


def dense_targets(targets: list[Target], steps: int, num_classes: int) -> torch.Tensor:
    """Per-step multi-hot targets of the dense head.

    Feature step i of a window stands for the interval ``[i / t, (i + 1) / t)`` of normalised time; it is
    positive for class c when a ground-truth segment ``[s, e]`` of class c meets that interval, i.e. for
    ``floor(s * t) <= i <= floor(e * t)`` (clipped to 0 .. t-1). This is PointTAD's
    ``dense_gt[int(s * t) : int(e * t) + 1, label] = 1``.

    Args:
        targets: b dicts with ``"segments"`` (g, 2) normalised (start, end) and ``"labels"`` (g,) 0-based.
        steps: t, the number of feature steps of a window.
        num_classes: k.

    Returns:
        (b, t, k) float tensor of 0 and 1, on the targets' device.
    """
    device = targets[0]["segments"].device if targets else None
    dense = torch.zeros(len(targets), steps, num_classes, device=device)
    step = torch.arange(steps, device=device)
    for window, target in enumerate(targets):
        segments, labels = target["segments"], target["labels"]
        first = torch.floor(segments[:, 0] * steps).clamp(0, steps - 1)
        last = torch.floor(segments[:, 1] * steps).clamp(0, steps - 1)
        covered = (step[None, :] >= first[:, None]) & (step[None, :] <= last[:, None])  # (g, t)
        for label, row in zip(labels.tolist(), covered):
            dense[window, row, label] = 1.0
    return dense


def auxiliary_layers(layers: int, batch: int, aux_loss: bool = True, aux_layers: str = "all") -> list[int]:
    """The decoder layers before the last that get the set-prediction loss (module docstring).

    Args:
        layers: L, the decoder's layers.
        batch: b, the windows in the batch (what ``pointtad`` truncates to).
        aux_loss, aux_layers: as :class:`~mgtutor.config.TrainConfig`.

    Returns:
        layer indices in increasing order: ``[]``, ``0 .. L-2``, or ``0 .. min(L-1, b)-1``.
    """
    if not aux_loss:
        return []
    if aux_layers == "all":
        return list(range(layers - 1))
    if aux_layers == "pointtad":
        return list(range(min(layers - 1, batch)))
    raise ValueError(f"aux_layers must be one of {AUX_LAYERS}, got {aux_layers!r}")


def _num_segments(targets: list[Target], device: torch.device) -> torch.Tensor:
    """DETR's normaliser: ground-truth segments per process, averaged over processes, at least 1."""
    total = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
        world = dist.get_world_size()
    return (total / world).clamp(min=1.0)


class SetCriterion(nn.Module):
    """The set-prediction loss of the module docstring.

    Args:
        train_cfg: loss weights (``class_weight``, ``no_object_weight``, ``l1_weight``, ``iou_weight``,
            ``dense_weight``), ``aux_loss`` and ``aux_layers``, and the matching costs (``cost_class``,
            ``cost_l1``, ``cost_iou``).
        num_classes: k, without the no-object class.
    """

    def __init__(self, train_cfg: TrainConfig, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.aux_loss = train_cfg.aux_loss
        self.aux_layers = train_cfg.aux_layers
        self.weights = {
            "class": train_cfg.class_weight,
            "l1": train_cfg.l1_weight,
            "iou": train_cfg.iou_weight,
            "dense": train_cfg.dense_weight,
        }
        self.costs = {
            "cost_class": train_cfg.cost_class,
            "cost_l1": train_cfg.cost_l1,
            "cost_iou": train_cfg.cost_iou,
        }
        class_weight = torch.ones(num_classes + 1)
        class_weight[num_classes] = train_cfg.no_object_weight
        self.register_buffer("class_weight", class_weight, persistent=False)

    def match(self, output: DetectorOutput, targets: list[Target], layer: int = -1) -> Matches:
        """The Hungarian matching of one decoder layer's predictions (default: the last) to the targets."""
        return match_batch(output.logits[layer].detach(), output.segments[layer].detach(), targets, **self.costs)

    def layer_losses(
        self,
        logits: torch.Tensor,
        segments: torch.Tensor,
        targets: list[Target],
        matches: Matches,
        num_segments: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """``class``, ``l1`` and ``iou`` of one layer, given its matching.

        Args:
            logits: (b, q, k + 1); segments: (b, q, 2) (start, end); matches: b pairs (pred_idx, tgt_idx);
            num_segments: the scalar normaliser N.
        """
        window = torch.cat([torch.full_like(pred, b) for b, (pred, _) in enumerate(matches)]).to(logits.device)
        query = torch.cat([pred for pred, _ in matches]).to(logits.device)
        matched_labels = torch.cat([t["labels"][tgt.to(t["labels"].device)] for t, (_, tgt) in zip(targets, matches)])
        matched_targets = torch.cat(
            [t["segments"][tgt.to(t["segments"].device)] for t, (_, tgt) in zip(targets, matches)]
        )

        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[window, query] = matched_labels.to(logits.device)
        class_loss = F.cross_entropy(
            rearrange(logits, "b q c -> b c q"), classes, weight=self.class_weight.to(logits.dtype)
        )

        predicted = segments[window, query]  # (n_matched, 2)
        matched_targets = matched_targets.to(predicted)
        l1 = (to_centre_length(predicted) - to_centre_length(matched_targets)).abs().sum() / num_segments
        iou = (1 - segment_iou(predicted.clamp(0, 1), matched_targets)).sum() / num_segments
        return {"class": class_loss, "l1": l1, "iou": iou}

    def forward(self, output: DetectorOutput, targets: list[Target]) -> dict[str, torch.Tensor]:
        """All terms and their weighted ``total`` (module docstring).

        Args:
            output: a ``DetectorOutput`` (``logits`` (L, b, q, k + 1), ``segments`` (L, b, q, 2),
                ``dense`` (b, t, k) or None).
            targets: b dicts ``{"segments": (g, 2), "labels": (g,)}``, g >= 0.
        """
        logits, segments = output.logits, output.segments
        if logits.dim() != 4 or logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"expected logits (L, b, q, {self.num_classes + 1}) for {self.num_classes} classes, "
                f"got {tuple(logits.shape)}"
            )
        if segments.shape != (*logits.shape[:3], 2):
            raise ValueError(f"expected segments {(*logits.shape[:3], 2)}, got {tuple(segments.shape)}")
        num_segments = _num_segments(targets, logits.device)
        last = logits.shape[0] - 1
        layers = [last, *auxiliary_layers(last + 1, logits.shape[1], self.aux_loss, self.aux_layers)]
        losses: dict[str, torch.Tensor] = {}
        for layer in layers:
            matches = self.match(output, targets, layer)
            terms = self.layer_losses(logits[layer], segments[layer], targets, matches, num_segments)
            suffix = "" if layer == last else f"_{layer}"
            losses.update({f"{name}{suffix}": value for name, value in terms.items()})
        if output.dense is not None:
            if output.dense.dim() != 3 or output.dense.shape[-1] != self.num_classes:
                raise ValueError(f"expected dense logits (b, t, {self.num_classes}), got {tuple(output.dense.shape)}")
            expected = dense_targets(targets, output.dense.shape[1], self.num_classes).to(output.dense)
            losses["dense"] = F.binary_cross_entropy_with_logits(output.dense, expected)
        losses["total"] = sum(self.weights[name.split("_")[0]] * value for name, value in losses.items())
        return losses

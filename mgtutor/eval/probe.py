"""Linear probes: how much of the video each decoder layer's query vectors carry.

A query vector that has read the video can tell what the gesture it stands for is. The probe asks
exactly that: for every ground-truth gesture of a set of windows, take the query the last layer's
Hungarian matching assigns to it (:func:`mgtutor.train.matching.match_batch`, the training costs), read
that query's vector before the decoder (the learnt initial vector, the same for every window) and after
each decoder layer, and fit a multinomial logistic regression from the vector to the gesture's class on
one set of windows; its accuracy on another set of windows is the layer's score.

The initial vectors know only which query they are, so their score is what query identity alone
predicts. A layer whose score stays there has not brought the video into its queries; a layer far
above it has.

- :func:`query_vectors`: the matched queries' vectors at every depth, and the gestures' classes.
- :func:`linear_probe`: fit on one set, accuracy on another.
- :func:`probe_layers`: both, for every depth, with the majority-class rate as chance.

Shapes: L decoder layers, n matched gestures, d hidden size, q queries, k classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mgtutor.data.dataset import collate
from mgtutor.train.matching import match_batch


@dataclass
class ProbeData:
    """Matched queries' vectors and the classes of the gestures they stand for.

    Attributes:
        vectors: (L + 1, n, d): row 0 the initial query vectors, row l + 1 the vectors after layer l.
        labels: (n,) the gestures' classes, 0-based.
        queries: (n,) which query each gesture was matched to.
    """

    vectors: torch.Tensor
    labels: torch.Tensor
    queries: torch.Tensor


@dataclass
class ProbeResult:
    """Accuracy of a linear probe at every depth of the decoder, on the held-out windows.

    Attributes:
        accuracy: L + 1 values: the initial query vectors (query identity alone), then each layer's.
        chance: the held-out rate of the fit set's most frequent class.
        fit_size, test_size: matched gestures in the fit and the held-out windows.
    """

    accuracy: list[float]
    chance: float
    fit_size: int
    test_size: int

    def table(self) -> str:
        """A small text table: one row a depth."""
        rows = [f"{'initial vectors':>16s}  {self.accuracy[0]:.3f}"]
        rows += [f"{f'after layer {i}':>16s}  {a:.3f}" for i, a in enumerate(self.accuracy[1:])]
        rows.append(f"{'chance':>16s}  {self.chance:.3f}")
        return "\n".join(rows)


@contextmanager
def recorded_queries(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of ``model`` appends each decoder layer's output query
    vectors (b, q, d) to the yielded list, in layer order (forward hooks on ``model.decoder.layers``)."""
    recorded: list[torch.Tensor] = []
    handles = [
        layer.register_forward_hook(lambda _module, _inputs, out: recorded.append(out.query.detach()))
        for layer in model.decoder.layers
    ]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def query_vectors(
    model: nn.Module,
    windows: Dataset | Sequence[Mapping[str, Any]],
    costs: Mapping[str, float] | None = None,
    batch_size: int = 16,
) -> ProbeData:
    """The vectors of the queries matched to every ground-truth gesture of ``windows``.

    Args:
        model: a :class:`~mgtutor.model.detector.Detector` (run in eval mode, then put back as it was).
        windows: window items, as ``mgtutor.data.dataset.WindowDataset`` gives them (the dataset itself,
            or a list of its items).
        costs: ``cost_class``, ``cost_l1``, ``cost_iou`` of the matching (default PointTAD's 10 / 5 / 5).
        batch_size: windows a forward pass.

    Returns:
        :class:`ProbeData` with n = the number of gestures in ``windows``.
    """
    batches = DataLoader(windows, batch_size=batch_size, collate_fn=collate)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    vectors, labels, queries = [], [], []
    try:
        for batch in batches:
            inputs = batch["clip" if "clip" in batch else "features"].to(device)
            targets = [{"segments": s.to(device), "labels": l.to(device)} for s, l in zip(batch["segments"], batch["labels"])]
            with recorded_queries(model) as layers:
                output = model(inputs)
            depths = torch.stack([model.query_vectors.expand_as(layers[0]), *layers])  # (L + 1, b, q, d)
            matches = match_batch(output.logits[-1], output.segments[-1], targets, **(costs or {}))
            for window, ((pred, tgt), target) in enumerate(zip(matches, targets)):
                vectors.append(depths[:, window, pred.to(device)].float().cpu())
                labels.append(target["labels"][tgt.to(device)].cpu())
                queries.append(pred.cpu())
    finally:
        model.train(was_training)
    data = ProbeData(torch.cat(vectors, dim=1), torch.cat(labels), torch.cat(queries))
    if not len(data.labels):
        raise ValueError("the windows hold no ground-truth gesture to probe")
    return data


def linear_probe(
    fit_x: torch.Tensor,
    fit_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    weight_decay: float = 1e-3,
    steps: int = 100,
) -> float:
    """Accuracy on (test_x, test_y) of a multinomial logistic regression fitted to (fit_x, fit_y).

    The inputs are standardised with the fit set's mean and standard deviation; the regression
    minimises cross-entropy + ``weight_decay * |W|^2`` with L-BFGS, full batch, in float64, from zero
    weights, so the result is deterministic.

    Args:
        fit_x: (n, d); fit_y: (n,) classes in 0 .. k-1; test_x: (m, d); test_y: (m,); num_classes: k.

    Returns:
        the fraction of test rows whose most likely class is their class.
    """
    if fit_x.dim() != 2 or test_x.dim() != 2 or fit_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) inputs, got {tuple(fit_x.shape)} and {tuple(test_x.shape)}")
    if len(fit_x) != len(fit_y) or len(test_x) != len(test_y):
        raise ValueError("each input row needs one class")
    fit_x, test_x = fit_x.double(), test_x.double()
    mean, std = fit_x.mean(0), fit_x.std(0, unbiased=False).clamp(min=1e-6)
    fit_x, test_x = (fit_x - mean) / std, (test_x - mean) / std
    weight = torch.zeros(fit_x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(fit_x @ weight + bias, fit_y) + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(objective)
    with torch.no_grad():
        return ((test_x @ weight + bias).argmax(-1) == test_y).double().mean().item()


def probe_layers(
    model: nn.Module,
    fit_windows: Dataset | Sequence[Mapping[str, Any]],
    test_windows: Dataset | Sequence[Mapping[str, Any]],
    costs: Mapping[str, float] | None = None,
    num_classes: int | None = None,
    weight_decay: float = 1e-3,
) -> ProbeResult:
    """A linear probe at every depth of ``model``'s decoder: fitted on ``fit_windows``' gestures,
    scored on ``test_windows``' (module docstring). ``num_classes`` defaults to ``model.cfg.num_classes``."""
    k = num_classes if num_classes is not None else model.cfg.num_classes
    fit = query_vectors(model, fit_windows, costs)
    test = query_vectors(model, test_windows, costs)
    accuracy = [
        linear_probe(fit.vectors[depth], fit.labels, test.vectors[depth], test.labels, k, weight_decay)
        for depth in range(len(fit.vectors))
    ]
    majority = torch.bincount(fit.labels, minlength=k).argmax()
    chance = (test.labels == majority).double().mean().item()
    return ProbeResult(accuracy, chance, len(fit.labels), len(test.labels))

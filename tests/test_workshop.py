"""The workshop's exercises, tested both ways (mgtutor.workshop).

Every exercise is found in the instructor's notebooks by its ``### BEGIN SOLUTION`` marker; the cell after
it is its check, ``name = check("name", name)``. Each runs here the way a student meets it, in a namespace
holding only the notebook's first code cell (its imports):

- the students' copy's stub: the check says "not done yet" and hands back the library's version;
- the instructor's solution: the check passes and keeps the student's function;
- every wrong answer of ``WRONG_ANSWERS`` (the code a student might put between the markers): the check
  says what is wrong with it, naming the mistake, and hands back the library's version.

Each of an exercise's known mistakes (``Exercise.mistakes``) must be reached by one of its wrong answers
here, so that a new exercise cannot pass without its messages being tried on real code.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from mgtutor.cli import main as cli_main
from mgtutor.workshop.check import exercise, exercises, grade
from mgtutor.workshop.compare import difference, same
from mgtutor.workshop.student import BEGIN, END, SolutionMarkerError, stub_solutions, write_student_copies

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# the notebooks that hold exercises so far; each must hold at least two
WITH_EXERCISES = ("01", "02", "03", "04", "05", "06", "07", "08", "09")

# the solutions of notebooks 08 and 09 with a piece to vary, for the wrong answers below
CLS = "-logits.softmax(-1)[:, labels]"
PAIR_COST = (
    "class_cost = {cls}\n"
    "l1_cost = (centre_length(segments)[:, None] - centre_length(truth)[None]).abs().sum(-1)\n"
    "iou_cost = -tiou(segments.clamp(0, 1)[:, None], truth[None])\n"
    "return (cost_class * class_cost + cost_l1 * l1_cost + cost_iou * iou_cost)"
)
CLASS_TERM = (
    "k = logits.shape[-1] - 1\nclasses = torch.full((logits.shape[0],), k)\nclasses[pred_idx] = matched_labels\n"
    "weight = {weight}.to(logits.dtype)\nnll = ({nll}).gather(1, classes[:, None])[:, 0]\n"
    "return (weight * nll).sum() / {total}"
)
WALK = (
    "credited, consumed = [], set()\nfor g in gestures:\n"
    "    hit = next((j for j, p in enumerate(predictions) if p[0] == g[0] and j not in consumed and {test}), None)\n"
    "    credited.append(hit)\n"
    "    if one_to_one and hit is not None:\n        consumed.add(hit)\n"
    "return credited"
)
MICRO_F1 = (
    "correct = sum(correct_detections(predictions.get(s, []), gestures, alpha, one_to_one) for s, gestures in truth.items())\n"
    "n_predictions, n_truth = sum(map(len, predictions.values())), sum(map(len, truth.values()))\n"
    "precision = correct / n_predictions if n_predictions else 0.0\n"
    "recall = correct / n_truth if n_truth else 0.0\n"
    "return correct, precision, recall, 2 * precision * recall / (precision + recall + 1e-7)"
)

# exercise -> [(code between the markers, a piece of the message it must get)]
WRONG_ANSWERS: dict[str, list[tuple[str, str]]] = {
    "zoh_diagonal": [
        ("return 1 + delta * a, delta * b", "Euler's rule"),
        ("dA = delta * a\nreturn 1 + dA, torch.where(a == 0, delta * b, torch.expm1(dA) / a * b)", "the first two terms of exp"),
        ("return torch.exp(delta * a), delta * b", "Mamba's shortcut"),
        ("return torch.exp(delta * a), (torch.exp(delta * a) - 1) / a * b", "two things"),
        ("return torch.exp(delta * a), torch.expm1(delta * a) / a * b", "you divide 0 by 0"),
        ("B_bar = torch.where(a == 0, delta * b, (torch.exp(delta * a) - 1) / a * b)\nreturn torch.exp(delta * a), B_bar",
         "loses digits when x is tiny"),
        ("return torch.exp(delta * a)", "you returned one tensor of shape (8,); expected a tuple (A_bar, B_bar)"),
        ("B_bar = torch.where(a == 0, delta * b, torch.expm1(delta * a) / a * b)\nreturn torch.exp(delta * a).double(), B_bar.double()",
         "your `A_bar` is float64 where mgtutor's is float32"),
    ],
    "ssm_kernel": [
        ("return (c * B_bar) @ A_bar[:, None] ** torch.arange(1, length + 1)", "starts one step late"),
        ("return ((c * B_bar) @ A_bar[:, None] ** torch.arange(length)).flip(0)", "reversed in time"),
        ("return (c * B_bar)[:, None] * A_bar[:, None] ** torch.arange(length)",
         "has shape (8, 50); expected (50,): an extra axis 0 of size 8; did you forget to sum over it?"),
    ],
    "fft_causal_conv": [
        ("return torch.fft.irfft(torch.fft.rfft(x) * torch.fft.rfft(K), n=x.shape[-1])", "wraps around"),
        ("l = x.shape[-1]\nreturn torch.fft.irfft(torch.fft.rfft(x, n=2 * l) * torch.fft.rfft(K, n=2 * l), n=2 * l)[l:]",
         "you kept the last l"),
        ("l = x.shape[-1]\nreturn torch.fft.irfft(torch.fft.rfft(x, n=2 * l) * torch.fft.rfft(K, n=2 * l), n=2 * l)",
         "your `y` has shape (128,); expected (64,)"),
    ],
    "sequential_scan": [
        ('h = h + dBu_t\nys.append(einsum(h, C_t, "b d n, b n -> b d"))', "your state never forgets"),
        ('ys.append(einsum(h, C_t, "b d n, b n -> b d"))\nh = dA_t * h + dBu_t', "your y_t reads h_{t-1}"),
        ('h = dA_t * (h + dBu_t)\nys.append(einsum(h, C_t, "b d n, b n -> b d"))', "you decay the new input too"),
        ("h = dA_t * h + dBu_t\nys.append(h)", "your function raised RuntimeError"),
    ],
    "chunked_scan_backward": [
        ("g_t = Cdy[t] + g_next\ng.append(g_t)\ng_next = g_t", "your gradient never decays"),
        ("g_t = Cdy[t] + dA[t] * g_next\ng.append(g_t)\ng_next = g_t", "you multiply g_{t+1} by A_bar_t"),
        ("g_t = Cdy[t] + g_next\ng_next = dA[t] * g_t", "your function raised RuntimeError: stack expects a non-empty TensorList"),
    ],
    "causal_conv1d": [
        ('k = weight.shape[-1]\nwindows = F.pad(u, (0, k - 1)).unfold(-1, k, 1)\n'
         'return einsum(windows, weight, "b d l k, d k -> b d l") + bias[:, None]', "uses inputs after t"),
        ('k = weight.shape[-1]\nwindows = F.pad(u, (k - 1, 0)).unfold(-1, k, 1)\n'
         'return einsum(windows, weight.flip(-1), "b d l k, d k -> b d l") + bias[:, None]', "your kernel is flipped"),
        ('k = weight.shape[-1]\nwindows = F.pad(u, (k - 1, 0)).unfold(-1, k, 1)\n'
         'return einsum(windows, weight, "b d l k, d k -> b d l")', "you left out conv1d's bias"),
        ('k = weight.shape[-1]\nreturn einsum(u.unfold(-1, k, 1), weight, "b d l k, d k -> b d l") + bias[:, None]',
         "on the input l = 2, shorter than k = 4"),
    ],
    "gated_output": [
        ("return (y + u * D[:, None]) * torch.sigmoid(z)", "you gated with sigmoid(z)"),
        ("return y * F.silu(z) + u * D[:, None]", "you add the skip D u after the gate"),
        ("return y * F.silu(z)", "you left out the skip D u"),
        ("return (y + u * D[:, None]) * z", "you multiplied by z itself"),
        ("return (y + u * D) * F.silu(z)", "raised RuntimeError: The size of tensor a (7) must match the size of tensor b (5)"),
    ],
    "mamba_stream": [
        ("residual, x = None, v\nfor layer in block.blocks:\n    residual = x if residual is None else x + residual\n"
         "    x = layer.mixer(layer.norm(residual))\nreturn x", "your stream ends on the last Mamba block's output"),
        ("x = v\nfor layer in block.blocks:\n    residual = x\n    x = layer.mixer(layer.norm(residual))\nreturn x + residual",
         "your residual forgets the earlier blocks"),
        ("residual, x = None, v\nfor layer in block.blocks:\n    residual = x if residual is None else x + residual\n"
         "    x = layer.mixer(residual)\nreturn x + residual", "you fed each Mamba block the raw residual"),
        ("return v", "your `u` differs in"),
    ],
    "centre_ordered": [
        ("index = torch.argsort(centres, dim=1, stable=True).unsqueeze(-1).expand_as(v)\nu = block.scan(v.gather(1, index))",
         "your outputs stay in scan order"),
        ("index = torch.argsort(centres, dim=1, descending=True, stable=True).unsqueeze(-1).expand_as(v)\n"
         "u = torch.empty_like(v).scatter(1, index, block.scan(v.gather(1, index)))", "from the latest centre to the earliest"),
        ("index = torch.argsort(centres[:1], dim=1, stable=True).expand_as(centres).unsqueeze(-1).expand_as(v)\n"
         "u = torch.empty_like(v).scatter(1, index, block.scan(v.gather(1, index)))", "by the first window's centres"),
        ("u = block.scan(v)", "you scanned in index order"),
        ("index = torch.argsort(centres, dim=1, stable=True)\nu = torch.empty_like(v).scatter(1, index, block.scan(v.gather(1, index)))",
         "your function raised RuntimeError"),
    ],
    # notebook 05
    "frame_shown": [
        ("return np.round(k * source_fps / fps).astype(np.int64)", "you round k * source_fps / fps"),
        ("return np.floor(k * fps / source_fps + 1e-6).astype(np.int64)", "source_fps / fps (3 at 30 -> 10 fps"),
        ("return np.floor(k * source_fps / fps).astype(np.int64)", "Add a small slack before flooring"),
        ("return np.floor(k * source_fps / fps + 1e-6)", "holds float64 where mgtutor's holds int64"),
        ("return [int(n) for n in np.floor(k * source_fps / fps + 1e-6)]", "is a list of 60; expected a numpy array of shape (60,)"),
    ],
    "to_window": [
        ("r = fps / source_fps\nreturn (np.stack([frames[:, 0] * r, frames[:, 1] * r], axis=-1) - window_start) / window",
         "your segments end one original frame early"),
        ("r = source_fps / fps\nreturn (np.stack([frames[:, 0] * r, (frames[:, 1] + 1) * r], axis=-1) - window_start) / window",
         "original frame n begins at sampled position n r"),
        ("r = fps / source_fps\nreturn np.stack([frames[:, 0] * r, (frames[:, 1] + 1) * r], axis=-1) / window",
         "you left out the window's start"),
        ("r = source_fps / fps\nreturn (np.stack([frames[:, 0] * r, frames[:, 1] * r], axis=-1) - window_start) / window",
         "two things: the ratio"),
        ("r = fps / source_fps\nreturn (np.stack([frames[:, 0] * r, (frames[:, 1] + 1) * r]) - window_start) / window",
         "has shape (2, 4); expected (4, 2): the same sizes in another order"),
        ("r = fps / source_fps\nreturn ((np.stack([frames[:, 0] * r, (frames[:, 1] + 1) * r], axis=-1) - window_start) / window).astype(np.float32)",
         "holds float32 where mgtutor's holds float64"),
    ],
    "cut_windows": [
        ("return list(range(0, length - window + 1, stride)) if length > window else [0]", "you left out the end-aligned window"),
        ("if length <= window:\n    return [0]\nreturn list(range(0, length - window + 1, stride)) + [length - window]", "comes twice"),
        ("if length <= window:\n    return [0]\nstarts = list(range(0, length - window + 1, stride))\n"
         "if starts[-1] != length - window - 1:\n    starts.append(length - window - 1)\nreturn starts", "starts one frame early"),
        ("starts = list(range(0, length - window + 1, stride)) or [length - window]\n"
         "if starts[-1] != length - window:\n    starts.append(length - window)\nreturn starts", "yours starts before the sequence does"),
        ("if length <= window:\n    return []\nstarts = list(range(0, length - window + 1, stride))\n"
         "if starts[-1] != length - window:\n    starts.append(length - window)\nreturn starts", "not none"),
        ("starts = list(range(0, length - window + 1, stride))\nif starts[-1] != length - window:\n"
         "    starts.append(length - window)\nreturn starts", "raised IndexError: list index out of range"),
        ("return np.arange(0, length - window + 1, stride)", "list(...) makes one"),
    ],
    # notebook 06
    "tf_same_padding": [
        ("return k // 2, k // 2", "PyTorch's symmetric padding=k // 2"),
        ("total = max((-(-n // s) - 1) * s + k - n, 0)\nreturn total - total // 2, total // 2", "the odd cell goes before"),
        ("total = (-(-n // s) - 1) * s + k - n\nreturn total // 2, total - total // 2", "your total goes negative"),
        ("total = max((n // s - 1) * s + k - n, 0)\nreturn total // 2, total - total // 2", "your output has n // s steps"),
        ("total = max((-(-n // s) - 1) * s + k - n, 0)\nreturn total / 2, total / 2", "your `before` is 2.5; mgtutor's is the whole number 2"),
    ],
    "unit3d_by_hand": [
        ("pads = [p for n, k, s in zip(x.shape[2:], weight.shape[2:], stride) for p in i3d_lib.same_padding(n, k, s)]\n"
         "z = F.conv3d(F.pad(x, pads), weight, stride=stride)\n"
         "return F.relu((z - running_mean.view(1, -1, 1, 1, 1)) / torch.sqrt(running_var.view(1, -1, 1, 1, 1) + 1e-3) + beta.view(1, -1, 1, 1, 1))",
         "F.pad lists the LAST axis first"),
        ("z = F.conv3d(x, weight, stride=stride, padding=tuple(k // 2 for k in weight.shape[2:]))\n"
         "return F.relu((z - running_mean.view(1, -1, 1, 1, 1)) / torch.sqrt(running_var.view(1, -1, 1, 1, 1) + 1e-3) + beta.view(1, -1, 1, 1, 1))",
         "you padded k // 2 on both sides"),
        ("z = i3d_lib.pad_same(x, weight.shape[2:], stride)\nz = F.conv3d(z, weight, stride=stride)\n"
         "return F.relu(F.batch_norm(z, running_mean, running_var, None, beta, training=False))", "eps = 1e-5, PyTorch's default"),
        ("z = F.conv3d(i3d_lib.pad_same(x, weight.shape[2:], stride), weight, stride=stride)\n"
         "return F.relu((z - running_mean.view(1, -1, 1, 1, 1)) / (running_var.view(1, -1, 1, 1, 1) + 1e-3) + beta.view(1, -1, 1, 1, 1))",
         "you divide by var + eps"),
        ("z = F.relu(F.conv3d(i3d_lib.pad_same(x, weight.shape[2:], stride), weight, stride=stride))\n"
         "return F.batch_norm(z, running_mean, running_var, None, beta, training=False, eps=1e-3)", "you apply ReLU before the BatchNorm"),
        ("z = F.conv3d(i3d_lib.pad_same(x, weight.shape[2:], stride), weight, stride=stride)\n"
         "return F.relu(F.batch_norm(z, running_mean, running_var, None, None, training=False, eps=1e-3))", "your `y` differs in"),
    ],
    # notebook 08
    "pair_cost": [
        (PAIR_COST.format(cls="-logits.log_softmax(-1)[:, labels]"), "-log p, the cross-entropy's"),
        (PAIR_COST.format(cls="-logits[:, labels]"), "reads the raw logits"),
        (PAIR_COST.format(cls="-logits[:, :-1].softmax(-1)[:, labels]"), "leaves out the no-object class"),
        (PAIR_COST.format(cls="logits.softmax(-1)[:, labels]"), "your class term is +p"),
        (PAIR_COST.replace("centre_length(segments)[:, None] - centre_length(truth)[None]", "segments[:, None] - truth[None]").format(cls=CLS),
         "your L1 term compares (start, end)"),
        (PAIR_COST.replace("tiou(segments.clamp(0, 1)[:, None]", "tiou(segments[:, None]").format(cls=CLS), "clamps them to the window first"),
        (PAIR_COST.replace("(centre_length(segments)", "(centre_length(segments.clamp(0, 1))").format(cls=CLS),
         "you clamp the segments for the L1 term too"),
        (PAIR_COST.replace("iou_cost = -tiou", "iou_cost = tiou").format(cls=CLS), "your tIoU term is +tIoU"),
        (PAIR_COST.replace("(cost_class * class_cost + cost_l1 * l1_cost", "(cost_l1 * class_cost + cost_class * l1_cost").format(cls=CLS),
         "your `cost` differs in"),
        (PAIR_COST.format(cls=CLS) + ".T", "has shape (4, 12); expected (12, 4): the same sizes in another order"),
    ],
    "class_term": [
        ("k = logits.shape[-1] - 1\nclasses = torch.full((logits.shape[0],), k)\nclasses[pred_idx] = matched_labels\n"
         "return F.cross_entropy(logits, classes)", "every query weighs 1 in your mean"),
        (CLASS_TERM.format(weight="torch.where(classes == k, no_object_weight, 1.0)", nll="-logits.log_softmax(-1)", total="logits.shape[0]"),
         "not by the number of queries"),
        (CLASS_TERM.format(weight="torch.where(classes == k, 1.0, no_object_weight)", nll="-logits.log_softmax(-1)", total="weight.sum()"),
         "your weights are the wrong way round"),
        (CLASS_TERM.replace("classes[pred_idx] = matched_labels\n", "")
         .format(weight="torch.where(classes == k, no_object_weight, 1.0)", nll="-logits.log_softmax(-1)", total="weight.sum()"),
         "every query's target is 'no object' in yours"),
        (CLASS_TERM.format(weight="torch.where(classes == k, no_object_weight, 1.0)", nll="-logits.softmax(-1)", total="weight.sum()"),
         "you used -p, the matching cost's class term"),
        (CLASS_TERM.format(weight="torch.where(classes == k, no_object_weight, 1.0)", nll="-logits.log_softmax(-1)", total="weight.sum()")
         .replace("(weight * nll).sum() / weight.sum()", "weight * nll / weight.sum()"),
         "has shape (12,); expected (): an extra axis 0 of size 12; did you forget to sum over it?"),
    ],
    # notebook 09
    "organisers_overlap": [
        ("(_, ps, pe), (_, gs, ge) = p, g\nreturn (min(pe, ge) - max(ps, gs)) / (ge - gs) if ge > gs else 0.0",
         "intersection over the ground truth's length; the organisers divide by the span of both"),
        ("(_, ps, pe), (_, gs, ge) = p, g\nreturn (min(pe, ge) - max(ps, gs) + 1) / (max(pe, ge) - min(ps, gs) + 1)",
         "you count frames inclusively"),
        ("(_, ps, pe), (_, gs, ge) = p, g\nspan = max(pe, ge) - min(ps, gs)\nreturn max(min(pe, ge) - max(ps, gs), 0) / span if span else 0.0",
         "you clamp the intersection at 0, as a tIoU does"),
        ("(_, ps, pe), (_, gs, ge) = p, g\nreturn (min(pe, ge) - max(ps, gs)) / (max(pe, ge) - min(ps, gs))",
         "raised ZeroDivisionError"),
        ("(_, ps, pe), (_, gs, ge) = p, g\nreturn torch.tensor(min(pe, ge) - max(ps, gs)) / max(max(pe, ge) - min(ps, gs), 1)",
         "a tensor holding one number"),
    ],
    "walk": [
        (WALK.replace("if one_to_one and hit is not None", "if hit is not None").format(test="miga_overlap(p, g) > alpha"),
         "you consume a credited prediction by the organisers' rule too"),
        (WALK.replace("if one_to_one and hit is not None", "if False").format(test="miga_overlap(p, g) > alpha"),
         "with one_to_one=True a credited prediction is used up"),
        (WALK.format(test="miga_overlap(p, g) >= alpha"), "the rule is strictly greater"),
        (WALK.replace("p[0] == g[0] and ", "").format(test="miga_overlap(p, g) > alpha"), "a prediction counts only for a gesture of its own class"),
        (WALK.replace("hit = next((j for j, p in enumerate(predictions)", "hit = max((j for j, p in enumerate(predictions)")
         .replace("), None)", "), key=lambda j: miga_overlap(predictions[j], g), default=None)").format(test="miga_overlap(p, g) > alpha"),
         "the walk takes the FIRST prediction in order"),
        ("return correct_detections(predictions, gestures, alpha, one_to_one)", "is an int (3); expected a list of 4"),
    ],
    "micro_f1": [
        ("alone = [miga_f1({s: predictions.get(s, [])}, {s: g}, alpha, one_to_one) for s, g in truth.items()]\n"
         "return sum(r.correct for r in alone), *(sum(getattr(r, f) for r in alone) / len(alone) for f in ('precision', 'recall', 'f1'))",
         "you average each sequence's own precision"),
        (MICRO_F1.replace("return correct, precision, recall", "return correct, recall, precision"), "your precision and recall are swapped"),
        (MICRO_F1.replace("alpha, one_to_one)", "alpha)"), "pass one_to_one on to the count"),
        (MICRO_F1.replace("gestures, alpha, one_to_one)", "gestures, one_to_one=one_to_one)"), "pass alpha on to the count"),
        (MICRO_F1.replace("predictions.get(s, [])", "predictions[s]"), "raised KeyError"),
        (MICRO_F1.replace(" + 1e-7", ""), "raised ZeroDivisionError"),
    ],
    # notebook 07
    "refine": [
        ("length = points.max(-1, keepdim=True).values - points.min(-1, keepdim=True).values\nreturn points + deltas * 0.5 * length",
         "your segment spans all p points"),
        ("located = points[..., :-(points.shape[-1] // 3)]\n"
         "length = located.max(-1, keepdim=True).values - located.min(-1, keepdim=True).values\nreturn points + deltas * 0.5 * length",
         "you kept p - p // 3 points"),
        ("located = points[..., :localisation_points(points.shape[-1])]\n"
         "length = located.max(-1, keepdim=True).values - located.min(-1, keepdim=True).values\nreturn points + deltas * length",
         "you moved the points by delta * length"),
        ("return points + deltas", "your step is not scaled"),
        ("located = points[..., :localisation_points(points.shape[-1])]\n"
         "return points + deltas * 0.5 * (located.max(-1).values - located.min(-1).values)",
         "your function raised RuntimeError: The size of tensor a (30) must match the size of tensor b (16)"),
    ],
    "read_subpoints": [
        ('positions = (points[..., None] + offsets).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits.softmax(-1), "b q p s d, b q p s -> b q p d")',
         "jumped by whole windows"),
        ('positions = (points[..., None] + offsets / (features.shape[1] - 1)).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits.softmax(-1), "b q p s d, b q p s -> b q p d")',
         "you divided the offsets by t - 1"),
        ('positions = points[..., None] + offsets / features.shape[1]\n'
         'return einsum(sample_features(features, positions), logits.softmax(-1), "b q p s d, b q p s -> b q p d")',
         "a sub-point beyond the window's ends read zeros"),
        ('positions = (points[..., None] + offsets / features.shape[1]).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits, "b q p s d, b q p s -> b q p d")',
         "by the raw logits"),
        ('positions = (points[..., None] + offsets / features.shape[1]).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits.softmax(2), "b q p s d, b q p s -> b q p d")',
         "your softmax runs across the points"),
        ("positions = (points[..., None] + offsets / features.shape[1]).clamp(0, 1)\n"
         "return sample_features(features, positions).mean(dim=3)", "you averaged the sub-points equally"),
        ('positions = (points + offsets / features.shape[1]).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits.softmax(-1), "b q p s d, b q p s -> b q p d")',
         "your function raised RuntimeError"),
    ],
    "frame_mix": [
        ('return rearrange(F.relu(mixing.frame_norm(einsum(point_features, frame, "b q k d, b q j k -> b q d j"))), "b q d p -> b q p d")',
         "you mixed with T transposed"),
        ('return rearrange(mixing.frame_norm(F.relu(einsum(point_features, frame, "b q k d, b q k j -> b q d j"))), "b q d p -> b q p d")',
         "the ReLU comes after the LayerNorm"),
        ('return rearrange(mixing.frame_norm(einsum(point_features, frame, "b q k d, b q k j -> b q d j")), "b q d p -> b q p d")',
         "you left out the ReLU"),
        ('return F.relu(mixing.frame_norm(einsum(point_features, frame, "b q k d, b q k j -> b q d j")))',
         "your `mixed` has shape (1, 3, 8, 5); expected (1, 3, 5, 8)"),
        ('return F.relu(mixing.frame_norm(einsum(point_features, frame, "b q k d, b q k j -> b q j d")))',
         "your function raised RuntimeError"),
    ],
}


@dataclass(frozen=True)
class ExerciseCell:
    notebook: str  # file name
    index: int  # the solution cell's index in the instructor's notebook
    name: str  # the exercise's name, as the check cell passes it
    solution: str  # the instructor's cell
    check: str  # the check cell

    def __str__(self) -> str:
        return f"{self.notebook[:2]}-{self.name}"


def check_call(source: str) -> tuple[str, str]:
    """(exercise name, the name the result is bound to) of a check cell ``fn = check("name", fn)``."""
    tree = ast.parse(source)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign), f"a check cell is one assignment: {source!r}"
    call = tree.body[0].value
    assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "check", source
    return call.args[0].value, tree.body[0].targets[0].id


def find_exercises() -> list[ExerciseCell]:
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for index, cell in enumerate(cells):
            if cell.cell_type == "code" and BEGIN in cell.source:
                following = next(c for c in cells[index + 1:] if c.cell_type == "code")
                name, _ = check_call(following.source)
                found.append(ExerciseCell(path.name, index, name, cell.source, following.source))
    return found


EXERCISE_CELLS = find_exercises()


@cache
def imports(notebook: str, folder: Path = NOTEBOOKS) -> dict:
    """The namespace after the notebook's first code cell (its imports)."""
    cells = nbformat.read(folder / notebook, as_version=4).cells
    first = next(c for c in cells if c.cell_type == "code")
    source = "\n".join(line for line in first.source.splitlines() if not line.startswith("%"))  # IPython magics
    namespace: dict = {}
    exec(compile(source, f"{notebook}, first code cell", "exec"), namespace)
    return namespace


def run_exercise(cell: ExerciseCell, solution_source: str) -> tuple[str, dict]:
    """Run an exercise cell and its check in a fresh copy of the notebook's imports: (printed text, namespace)."""
    namespace = dict(imports(cell.notebook))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(solution_source, f"{cell.notebook}, cell {cell.index}", "exec"), namespace)
        exec(compile(cell.check, f"{cell.notebook}, cell after {cell.index}", "exec"), namespace)
    return out.getvalue(), namespace


def with_answer(source: str, answer: str) -> str:
    """``source`` with its (first) marked solution replaced by ``answer``, indented as the markers are."""
    lines = source.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.strip() == BEGIN)
    end = next(i for i, line in enumerate(lines) if line.strip() == END)
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    return "\n".join(lines[:begin] + [indent + line for line in answer.splitlines()] + lines[end + 1:])


@pytest.fixture(scope="module")
def student_copies(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    write_student_copies(NOTEBOOKS, out)
    return out


def test_students_copies_hold_stubs_no_solutions_and_no_outputs(student_copies):
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        instructor = nbformat.read(path, as_version=4)
        copy = nbformat.read(student_copies / path.name, as_version=4)
        solutions = sum(c.cell_type == "code" and BEGIN in c.source for c in instructor.cells)
        stubs = [c for c in copy.cells if c.cell_type == "code" and "# YOUR CODE HERE" in c.source]
        assert len(stubs) == solutions, path.name
        assert "Students' copy" in copy.cells[0].source
        assert len(copy.cells) == len(instructor.cells) + 1
        for cell in copy.cells:
            assert BEGIN not in cell.source and END not in cell.source
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
        for stub in stubs:
            assert re.search(r'raise NotImplementedError\([\'"].{10,}[\'"]\)', stub.source), stub.source
        if path.name[:2] in WITH_EXERCISES:
            assert solutions >= 2, f"{path.name} holds {solutions} exercise(s); a notebook with exercises needs two or more"


def test_the_cli_writes_the_copies(tmp_path, capsys):
    assert cli_main(["student", "--notebooks", str(NOTEBOOKS), "--out", str(tmp_path / "student")]) == 0
    written = sorted(p.name for p in (tmp_path / "student").glob("*.ipynb"))
    assert written == sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert "01_ssm_discretisation.ipynb (3 exercises)" in capsys.readouterr().out


def test_a_stub_keeps_the_code_around_it_and_takes_the_hint():
    source = "def f(x):\n    y = 2\n    ### BEGIN SOLUTION\n    # HINT: double it\n    return y * x\n    ### END SOLUTION\n"
    assert stub_solutions(source) == "def f(x):\n    y = 2\n    # YOUR CODE HERE\n    raise NotImplementedError('double it')"


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\n# HINT: h\nx = 1\n### END SOLUTION", "must sit inside a function body"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", "no '# HINT: ...' line"),
        ("def f():\n    ### BEGIN SOLUTION\n    # HINT: h\n    return 1", "never closed"),
        ("def f():\n    return 1\n    ### END SOLUTION", "without a ### BEGIN SOLUTION"),
    ],
)
def test_bad_markers_are_refused_naming_the_cell_and_line(source, message):
    with pytest.raises(SolutionMarkerError, match=re.escape(message)) as error:
        stub_solutions(source, "07_x.ipynb, cell 4")
    assert "07_x.ipynb, cell 4, line" in str(error.value)


def test_every_exercise_is_in_a_notebook_and_every_mistake_has_a_wrong_answer():
    registered = exercises()
    in_notebooks = [cell.name for cell in EXERCISE_CELLS]
    assert sorted(in_notebooks) == sorted(registered), "each registered exercise appears exactly once in the notebooks"
    for cell in EXERCISE_CELLS:
        assert registered[cell.name].notebook == cell.notebook[:2], cell
        assert check_call(cell.check)[1] in cell.solution, f"{cell}: the check rebinds the exercise's function"
    for name, ex in registered.items():
        answers = WRONG_ANSWERS.get(name, [])
        assert answers, f"{name}: add wrong answers to WRONG_ANSWERS"
        for mistake in ex.mistakes:
            assert any(fragment in mistake.message for _, fragment in answers), f"{name}: no wrong answer reaches {mistake.message!r}"


@pytest.mark.parametrize("cell", EXERCISE_CELLS, ids=str)
def test_the_stub_says_not_done_yet_and_the_notebook_goes_on_with_the_library(cell, student_copies):
    copy = nbformat.read(student_copies / cell.notebook, as_version=4).cells[cell.index + 1]  # +1: the copy's first note
    assert "raise NotImplementedError" in copy.source
    printed, namespace = run_exercise(cell, copy.source)
    assert f"{cell.name}: not done yet" in printed
    assert namespace[check_call(cell.check)[1]] is exercise(cell.name).reference


@pytest.mark.parametrize("cell", EXERCISE_CELLS, ids=str)
def test_the_instructors_solution_passes(cell):
    printed, namespace = run_exercise(cell, cell.solution)
    assert f"✓ {cell.name} is right" in printed, printed
    assert namespace[check_call(cell.check)[1]] is not exercise(cell.name).reference


@pytest.mark.parametrize("cell", EXERCISE_CELLS, ids=str)
def test_the_fallback_takes_every_call_the_solution_takes(cell):
    """An unfinished exercise hands the library's version to the cells after it, which call it as the
    solution is written: every parameter of the solution, with the same default where it has one."""
    import inspect

    _, namespace = run_exercise(cell, cell.solution)
    solution = namespace[check_call(cell.check)[1]]
    reference = inspect.signature(exercise(cell.name).reference).parameters
    for name, parameter in inspect.signature(solution).parameters.items():
        assert name in reference, f"{cell.name}: the reference has no parameter {name!r}"
        assert reference[name].default == parameter.default, f"{cell.name}: {name!r} defaults to {reference[name].default!r}, the solution's to {parameter.default!r}"


@pytest.mark.parametrize("cell", EXERCISE_CELLS, ids=str)
def test_each_wrong_answer_gets_its_message(cell):
    for answer, fragment in WRONG_ANSWERS[cell.name]:
        printed, namespace = run_exercise(cell, with_answer(cell.solution, answer))
        assert f"✗ {cell.name} is not right yet" in printed, f"{answer!r} passed:\n{printed}"
        assert fragment in printed, f"{answer!r} should get {fragment!r}, got:\n{printed}"
        assert namespace[check_call(cell.check)[1]] is exercise(cell.name).reference


def test_grading_leaves_the_notebooks_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    grade("mamba_stream", exercise("mamba_stream").reference)
    torch.testing.assert_close(torch.rand(4), expected)


def test_the_verdict_shows_its_status_in_html_for_jupyterlab():
    html = grade("gated_output", exercise("gated_output").reference)._repr_html_()
    assert 'class="mgtutor-check mgtutor-check-passed"' in html and "is right" in html


def test_the_references_are_what_the_library_computes():
    """Where an exercise's reference is a formula (not a library call), it equals the library."""
    from mgtutor.ssm import Mamba, selective_scan
    from mgtutor.ssm.benchmark import scan_inputs

    x = scan_inputs(2, 6, 4, 11, dtype=torch.float64)
    bare = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], delta_bias=x["delta_bias"], delta_softplus=True)
    full = selective_scan(**x, delta_softplus=True)
    torch.testing.assert_close(exercise("gated_output").reference(bare, x["u"], x["z"], x["D"]), full)

    from mgtutor.model.interactive import DeformableSampling

    sampling = DeformableSampling(6, 9, subpoints=3, boundary_points=4).double()
    for heads in sampling.groups.values():
        torch.nn.init.normal_(heads["offsets"].weight, std=2.0)  # offsets of a few steps, some past the ends
        torch.nn.init.normal_(heads["weights"].weight)
    query, points = torch.randn(2, 5, 6, dtype=torch.float64), torch.rand(2, 5, 9, dtype=torch.float64)
    features = torch.randn(2, 11, 6, dtype=torch.float64)
    offsets = torch.cat([sampling.groups[g]["offsets"](query)[:, :, None].expand(-1, -1, n, -1) for g, n in (("boundary", 4), ("centre", 5))], 2)
    logits = torch.cat([sampling.groups[g]["weights"](query)[:, :, None].expand(-1, -1, n, -1) for g, n in (("boundary", 4), ("centre", 5))], 2)
    torch.testing.assert_close(exercise("read_subpoints").reference(features, points, offsets, logits), sampling(query, features, points))

    block = Mamba(8, d_conv=4).double()
    u = torch.randn(2, block.d_inner, 11, dtype=torch.float64)
    conv = exercise("causal_conv1d").reference(u, block.conv1d.weight[:, 0], block.conv1d.bias)
    torch.testing.assert_close(conv, block.conv1d(u)[..., :11])


@pytest.mark.slow
@pytest.mark.parametrize("number", WITH_EXERCISES)
def test_a_students_copy_runs_top_to_bottom_with_every_exercise_not_done(number, student_copies):
    """What a student sees on "Run All" before writing anything: no error, every check "not done yet".

    The copy runs from the top to its last check. The cells after it are the instructor's, source for
    source (asserted here), and nbval runs those; they see the library's functions where the student's
    are unfinished, which the stub tests above show equal the solutions. Running them again here would
    repeat notebooks 07 and 08's training runs (minutes) and test nothing new."""
    from nbclient import NotebookClient

    path = next(student_copies.glob(f"{number}_*.ipynb"))
    notebook = nbformat.read(path, as_version=4)
    instructor = nbformat.read(NOTEBOOKS / path.name, as_version=4)
    last_check = max(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and "= check(" in cell.source)
    rest = [cell.source for cell in notebook.cells[last_check + 1:]]
    assert rest == [cell.source for cell in instructor.cells[len(instructor.cells) - len(rest):]]
    notebook.cells = notebook.cells[: last_check + 1]
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    shown = [
        output.get("data", {}).get("text/plain", "") + output.get("text", "")
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    stubs = sum("# YOUR CODE HERE" in cell.source for cell in notebook.cells)
    assert sum("not done yet" in text for text in shown) == stubs >= 2
    assert not any(output.output_type == "error" for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)


@pytest.mark.parametrize(
    "got, expected, message",
    [
        (np.array([1.0, 2.0]), np.array([1, 2]), "holds float64 where mgtutor's holds int64: mgtutor's holds whole numbers"),
        ([1, 2], np.array([1, 2]), "is a list of 2; expected a numpy array of shape (2,) (int64)"),
        (np.array([[1, 2]]), np.array([1, 2]), "has shape (1, 2); expected (2,)"),
        (np.array([1, 3]), np.array([1, 2]), "differs in 1 of 2 entries; the largest difference is 1 at index (1,) (yours 3, mgtutor's 2)"),
        (np.array([0.5, 0.25 + 1e-3]), np.array([0.5, 0.25]), "(yours 0.251, mgtutor's 0.25)"),
        ([0, 32, 64], [0, 32, 64, 72], "is [0, 32, 64]; mgtutor's is [0, 32, 64, 72] (3 items where mgtutor has 4)"),
        ([0, None], [0, 1], "is [0, None]; mgtutor's is [0, 1]"),
        (np.array([0, 1]), [0, 1], "is a numpy array of shape (2,); expected a list of 2 (list(...) makes one)"),
        (list(range(20)), list(range(1, 21)), "your `x[0]` is 0; mgtutor's is 1"),  # too long to show whole
        (2.0, 2, "is 2.0, a float; mgtutor's is the whole number 2"),
        (3, 2, "is 3; mgtutor's is 2"),
        (0.3 + 1e-6, 0.3, "is 0.300001; mgtutor's is 0.3"),
        (float("nan"), 0.3, "is nan; mgtutor's is 0.3"),
        (torch.tensor(0.5), 0.5, "a tensor holding one number; expected a Python number (0.5): .item()"),
        ([0.5], 0.5, "is a list of 1; expected a number (0.5)"),
        (1, None, "is an int (1); mgtutor's is None"),
        (None, 4, "is None; expected a number (4)"),
    ],
)
def test_numbers_arrays_and_lists_are_compared_in_the_students_terms(got, expected, message):
    """Outputs that are not tensors: numpy arrays (the data pipeline), numbers (a padding, a count, an overlap),
    None and lists of them (window starts, credited predictions)."""
    found = difference(got, expected, ["x"])
    assert found is not None and message in found.text, found
    assert difference(expected, expected, ["x"]) is None and same(expected, expected, ["x"])
    assert not same(got, expected, ["x"])


def test_numbers_agree_within_float64s_tolerance_and_ints_stand_for_floats():
    assert difference(0.1 + 0.2, 0.3, ["x"]) is None
    assert difference(0, 0.0, ["x"]) is None  # `return 0` where mgtutor returns 0.0
    assert difference((1, 0.5), (1, 0.5 + 1e-12), ["a", "b"]) is None
    assert difference([0, None, 2], [0, None, 2], ["x"]) is None
    assert difference((np.array([1]),), np.array([1]), ["x"]) is None  # a one-tuple of an array is the array

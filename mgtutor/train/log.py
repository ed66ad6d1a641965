"""The per-epoch training log: one JSON object a line in ``<out>/log.jsonl``.

Each record holds the epoch (counted from 1), the mean of every loss term over the epoch's steps
(``loss/total``, ``loss/<term>``), the learning rate, the step count and seconds taken, and whatever
the evaluation returned (``eval/<name>``). ``mgtutor.viz.training.plot_training_log`` draws it;
:func:`layer_losses` reads one term of every decoder layer from it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mgtutor.files import write_atomic


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Add one epoch's record as a line at the end of the log."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_log(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace the log with ``records`` atomically (used on resume, from the checkpoint's history)."""
    write_atomic(path, "".join(json.dumps(record) + "\n" for record in records))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a log, in order; a line cut short by a crash at the very end is ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise ValueError(f"{path}, line {number}: not a JSON object ({err.msg})") from err
    return records


def layer_losses(records: Sequence[dict[str, Any]], layers: int, term: str = "class") -> list[float]:
    """One loss term of every decoder layer at the last epoch of ``records``.

    The log names decoder layer i's auxiliary terms ``loss/<term>_i`` (i = 0 .. L-2) and the last layer's
    ``loss/<term>`` (:class:`~mgtutor.train.losses.SetCriterion`). A layer without the term in the last
    record (auxiliary losses off, or not every layer supervised: ``train.aux_layers``) reads NaN.

    Args:
        records: a training log's records (:func:`read_log`, or ``Trainer.history``).
        layers: L, the number of decoder layers (``model.layers``).
        term: ``"class"``, ``"l1"`` or ``"iou"``.

    Returns:
        L values, layer 0 first, the last layer last.
    """
    if not records:
        raise ValueError("the training log holds no epoch yet")
    last = records[-1]
    names = [f"loss/{term}_{i}" for i in range(layers - 1)] + [f"loss/{term}"]
    if names[-1] not in last:
        raise KeyError(f"the log's last record has no loss/{term}; it holds {sorted(k for k in last if k.startswith('loss/'))}")
    return [float(last.get(name, math.nan)) for name in names]

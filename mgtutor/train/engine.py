"""The training engine: the paper's optimisation of the detector, checkpointed every epoch.

The seed paper trains with AdamW at lr 1e-4, halved every 10 epochs, for 50 epochs at batch size 1
(its section 4.2); PointTAD adds weight decay 1e-4, gradient clipping at 0.1 and a 10x smaller learning
rate for the encoder (docs/reference.md, section 3). :class:`Trainer` runs that loop for any detector-like model,
criterion and dataset; :func:`build_trainer` and :func:`train` build the real pieces from a
:class:`~mgtutor.config.Config`.

What makes a run repeatable and resumable:

- the order of the windows is a pure function of (seed, epoch) (a seeded ``DistributedSampler``, also
  with one process), and so are the seeds of the data-loading workers;
- every epoch ends with an atomic checkpoint (model, optimiser, scheduler, scaler, RNG states of every
  process, epoch, step, configuration, log history), so a resumed run continues exactly where the
  uninterrupted one would be (bit for bit on the CPU) and a killed run loses at most the epoch in
  progress;
- a non-finite loss stops the run before it touches the weights or the last good checkpoint.

On CUDA the forward pass runs under bf16 autocast (the losses in float32) with TF32 matmuls; on the
CPU everything is float32.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mgtutor.config import Config, ConfigError, config_from_dict, save_config
from mgtutor.data.dataset import WindowDataset, collate, model_inputs
from mgtutor.model.detector import Detector
from mgtutor.runtime import default_device, seed_everything
from mgtutor.train.checkpoint import FORMAT as CHECKPOINT_FORMAT
from mgtutor.train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mgtutor.train.distributed import (
    DistributedContext,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    init_distributed,
    make_sampler,
    shutdown_distributed,
    unwrap_model,
    wrap_model,
)
from mgtutor.train.log import append_record, write_log
from mgtutor.train.losses import SetCriterion

# Restored from a checkpoint's optimiser, scheduler and RNG states (or, for monitor, what best.pt was
# chosen by): a resumed run refuses a change of these instead of ignoring it.
KEPT_ON_RESUME = ("lr", "weight_decay", "lr_step", "lr_gamma", "seed", "monitor")
AmpMode = Literal["bf16", "none"]  # bf16 autocast on CUDA, or float32 throughout; also train.amp
Evaluate = Callable[[nn.Module, int], Mapping[str, float]]
StepCallback = Callable[[int, dict[str, float]], None]

LAST = "last.pt"
BEST = "best.pt"
LOG = "log.jsonl"


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the weights were not updated and no checkpoint was written."""

    def __init__(self, epoch: int, step: int, losses: Mapping[str, float]):
        self.epoch, self.step, self.losses = epoch, step, dict(losses)
        bad = [name for name, value in losses.items() if not math.isfinite(value)]
        values = ", ".join(f"{name}={losses[name]}" for name in bad)
        super().__init__(
            f"non-finite loss at step {step} (epoch {epoch}): {values}; training stopped before the update, "
            "the last checkpoint holds the last good epoch (lower train.lr or train.clip_grad, or check the data)"
        )


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.AdamW:
    """AdamW over the model's parameter groups (the encoder at ``lr * encoder_lr_scale``).

    A model with ``param_groups(lr, encoder_lr_scale)`` (the detector) chooses its groups, and a group may
    set its own ``weight_decay``; any other model trains all its parameters in one group. Groups without
    their own value decay by ``train.weight_decay``. For the detector that is every parameter, norms and
    biases included, as PointTAD's ``main.py`` decays all of its parameters; only Mamba's ``A_log`` and
    ``D`` (marked ``_no_weight_decay`` by the public Mamba) get weight decay 0
    (:meth:`~mgtutor.model.detector.Detector.param_groups`).
    """
    lr = config.train.lr
    if hasattr(model, "param_groups"):
        groups = model.param_groups(lr, config.model.encoder_lr_scale)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=config.train.weight_decay)


def _as_float32(output: Any) -> Any:
    """The model's output with floating tensors in float32, so the losses never run in bf16."""
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        changes = {
            f.name: value.float()
            for f in dataclasses.fields(output)
            if isinstance(value := getattr(output, f.name), torch.Tensor) and value.is_floating_point()
        }
        return dataclasses.replace(output, **changes)
    return output


def _worker_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the data loader's generator (hence of its workers) for one epoch on one process."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def check_resume(config: Config, state: Mapping[str, Any]) -> None:
    """Refuse to resume ``state`` (a checkpoint's dict) under ``config`` when they differ in a value the
    checkpoint's model, optimiser, schedule or random state was built with (every ``model`` key and
    :data:`KEPT_ON_RESUME`): CheckpointError naming each such key with both values."""
    if not isinstance(state.get("config"), dict) or not {"model", "optimizer", "scheduler", "rng", "epoch", "history"} <= set(state):
        raise CheckpointError("the checkpoint holds no training state to resume (a best.pt? resume from last.pt)")
    try:
        saved = config_from_dict(state["config"])
    except ConfigError as err:
        raise CheckpointError(f"the checkpoint's configuration cannot be read: {err}") from None
    kept = [("model", f.name) for f in dataclasses.fields(saved.model)] + [("train", key) for key in KEPT_ON_RESUME]
    differences = [
        f"{section}.{key}: {then!r} in the checkpoint, {now!r} now"
        for section, key in kept
        if (then := getattr(getattr(saved, section), key)) != (now := getattr(getattr(config, section), key))
    ]
    if differences:
        raise CheckpointError(
            "a resumed run continues the checkpoint's model, optimiser, schedule and random state, so it cannot "
            f"change {'; '.join(differences)} (drop those values, or train afresh into another train.out)"
        )


class Trainer:
    """Trains ``model`` with ``criterion`` on ``train_dataset`` as ``config.train`` says.

    Args:
        config: the run's configuration (``train`` for optimisation, ``data.num_workers``,
            ``model.encoder_lr_scale``); ``train.out`` is where checkpoints and the log go.
        model: maps a batch's ``"clip"`` (b, 3, T, H, W) float in [-1, 1] or ``"features"`` (b, feature_dim, t)
            to an output (a ``DetectorOutput``) the criterion understands. A batch of uint8 clips (with
            ``"augment"`` parameters) becomes that float clip on the training device
            (:func:`mgtutor.data.dataset.model_inputs`, ``data.augment``).
        criterion: ``criterion(output, targets) -> dict`` of scalar losses with a ``"total"`` entry;
            targets are a list (length b) of ``{"segments": (g, 2), "labels": (g,)}``.
        train_dataset: items as ``mgtutor.data.dataset.WindowDataset`` gives them.
        collate_fn: batches items (default ``mgtutor.data.dataset.collate``).
        evaluate: optional ``evaluate(model, epoch) -> {name: value}``, called on rank 0 with the bare
            model in eval mode every ``train.eval_every`` epochs and after the last; its figures go into
            the log as ``eval/<name>``, and ``train.monitor`` among them picks ``best.pt``.
        context: the process's place in a torchrun job (default: one process on the default device).
        progress: draw a tqdm bar per epoch (rank 0 only); False for tests and quiet notebooks.
        on_step: optional ``on_step(step, losses)`` after every optimiser step, with the step's number
            (from 1) and each loss term averaged over the processes (e.g. for a live plot).
    """

    def __init__(
        self,
        config: Config,
        model: nn.Module,
        criterion: Callable[..., Mapping[str, torch.Tensor]],
        train_dataset: Dataset,
        *,
        collate_fn: Callable | None = None,
        evaluate: Evaluate | None = None,
        context: DistributedContext | None = None,
        progress: bool = True,
        on_step: StepCallback | None = None,
    ):
        if len(train_dataset) == 0:
            raise ConfigError(
                "there are no training windows: check data.root (or the synthetic set), data.train_subjects "
                "and data.window (windows without a whole ground-truth gesture are dropped)"
            )
        self.config = config
        self.context = context or DistributedContext(device=default_device())
        self.device = self.context.device
        self.out = Path(config.train.out)
        self.evaluate = evaluate
        self.progress = progress
        self.on_step = on_step

        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = config.train.tf32
            torch.backends.cudnn.allow_tf32 = config.train.tf32
            torch.backends.cudnn.benchmark = True  # windows have one shape: pick the fastest kernels once
        self.amp_dtype = torch.bfloat16 if cuda and config.train.amp == "bf16" else None

        self.model = model.to(self.device)
        self.ddp_model = wrap_model(self.model, self.context)
        self.criterion = criterion.to(self.device) if isinstance(criterion, nn.Module) else criterion
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.train.lr_step, gamma=config.train.lr_gamma
        )
        # Loss scaling only matters for float16; with bf16 or float32 this scaler passes values through.
        # It is still checkpointed, so a float16 mode needs no change to the checkpoint format.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        self.sampler = make_sampler(train_dataset, self.context, config.train.seed)
        self.loader_generator = torch.Generator()
        self.loader = DataLoader(
            train_dataset,
            batch_size=config.train.batch_size,
            sampler=self.sampler,
            num_workers=config.data.num_workers,
            collate_fn=collate_fn or collate,
            pin_memory=cuda,
            generator=self.loader_generator,
        )

        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimiser steps taken
        self.history: list[dict[str, Any]] = []  # one record per completed epoch (the log's lines)
        self.best: dict[str, Any] | None = None  # the record with the highest eval/<train.monitor>
        self._rewrite_log = False  # set by load_state_dict: the first save replaces the log with the history

    # -- one step, one epoch, the whole run ----------------------------------------------------------

    @property
    def max_steps_reached(self) -> bool:
        max_steps = self.config.train.max_steps
        return max_steps is not None and self.global_step >= max_steps

    def _to_device(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        inputs = model_inputs(batch, self.device, self.config.data.augment)
        targets = [
            {"segments": s.to(self.device, non_blocking=True), "labels": l.to(self.device, non_blocking=True)}
            for s, l in zip(batch["segments"], batch["labels"])
        ]
        return inputs, targets

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """Forward, losses, backward, clip, AdamW update; returns each loss term (mean over processes)."""
        inputs, targets = self._to_device(batch)
        # cleared before the forward pass, so last step's gradients are not held while activations grow
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            output = self.ddp_model(inputs)
        losses = self.criterion(_as_float32(output), targets)
        names = list(losses)
        # One all-reduce of the detached terms: every process sees the same values, so all of them
        # stop together on a non-finite loss instead of waiting forever for a stopped one.
        values = all_reduce_mean(torch.stack([losses[name].detach().float() for name in names]), self.context)
        record = dict(zip(names, values.tolist()))
        if not all(math.isfinite(value) for value in record.values()):
            raise NonFiniteLossError(self.epoch + 1, self.global_step + 1, record)

        self.scaler.scale(losses["total"]).backward()
        if self.config.train.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        return record

    def train_one_epoch(self) -> dict[str, Any]:
        """Run epoch ``self.epoch + 1``: steps, schedule, evaluation when due, checkpoint and log line."""
        epoch = self.epoch
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(_worker_seed(self.config.train.seed, epoch, self.context.rank))
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        self.ddp_model.train()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}  # steps that had each term (train.aux_layers: pointtad varies with the batch)
        steps = 0
        start = time.perf_counter()
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch + 1}/{self.config.train.epochs}",
            disable=not (self.progress and self.context.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        for batch in bar:
            record = self.train_step(batch)
            if self.on_step is not None:
                self.on_step(self.global_step, record)
            for name, value in record.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
            steps += 1
            bar.set_postfix(loss=f"{record['total']:.4f}", refresh=False)
            if self.max_steps_reached:
                break
        bar.close()
        self.scheduler.step()

        summary: dict[str, Any] = {"epoch": epoch + 1, "step": self.global_step, "steps": steps, "lr": lr}
        summary.update({f"loss/{name}": total / counts[name] for name, total in sums.items()})
        summary["time"] = time.perf_counter() - start
        if self._evaluation_due(epoch + 1):
            start = time.perf_counter()
            summary.update(self._run_evaluation(epoch + 1))
            summary["eval_time"] = time.perf_counter() - start
        self.epoch = epoch + 1
        self.history.append(summary)
        self._save(summary)
        if self.progress and self.context.is_main:
            shown = ("loss/total", f"eval/{self.config.train.monitor}")
            figures = ", ".join(f"{k} {summary[k]:.4g}" for k in shown if k in summary)
            tqdm.write(f"epoch {epoch + 1}: {figures}, lr {lr:.3g}, {summary['time']:.1f} s")
        return summary

    def fit(self) -> list[dict[str, Any]]:
        """Train from the current epoch to ``train.epochs`` (or ``train.max_steps``); returns the history."""
        while self.epoch < self.config.train.epochs and not self.max_steps_reached:
            self.train_one_epoch()
        return self.history

    # -- evaluation ----------------------------------------------------------------------------------

    def _evaluation_due(self, epoch: int) -> bool:
        if self.evaluate is None:
            return False
        final = epoch == self.config.train.epochs or self.max_steps_reached
        every = self.config.train.eval_every
        return final or (every > 0 and epoch % every == 0)

    def _run_evaluation(self, epoch: int) -> dict[str, float]:
        """Rank 0 evaluates the bare model in eval mode while the others wait."""
        figures: dict[str, float] = {}
        if self.context.is_main:
            self.model.eval()
            with torch.no_grad():
                figures = {f"eval/{name}": float(value) for name, value in self.evaluate(self.model, epoch).items()}
            self.model.train()
        barrier(self.context)
        return figures

    # -- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as plain types and tensors (``weights_only``-loadable).

        Collective in a torchrun job (every process contributes its RNG states): call it on all ranks.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": all_gather_objects(rng_state(), self.context),  # one entry per rank
            "epoch": self.epoch,
            "global_step": self.global_step,
            "config": self.config.to_dict(),
            "metrics": {"last": self.history[-1] if self.history else None, "best": self.best},
            "history": list(self.history),
        }

    def _save(self, summary: dict[str, Any]) -> None:
        monitor = f"eval/{self.config.train.monitor}"
        improved = monitor in summary and (self.best is None or summary[monitor] > self.best[monitor])
        if improved:
            self.best = summary
        state = self.state_dict()
        if self.context.is_main:
            # config.yaml and the log are written with the checkpoint, so a run that fails before its
            # first epoch ends (a refused resume, bad data) leaves the folder as it found it
            save_checkpoint(state, self.out / LAST)
            if improved:
                best = {key: state[key] for key in ("format", "model", "epoch", "global_step", "config", "metrics")}
                save_checkpoint(best, self.out / BEST)
            save_config(self.config, self.out / "config.yaml")
            if self._rewrite_log:  # a resumed run: the checkpoint's history replaces whatever the log holds
                write_log(self.out / LOG, self.history)
                self._rewrite_log = False
            else:
                append_record(self.out / LOG, summary)
        barrier(self.context)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint made by :meth:`state_dict`.

        The checkpoint's model, optimiser, schedule and random state are restored as they are, so the
        values that built them (every ``model`` key and :data:`KEPT_ON_RESUME`) must be the ones in the
        checkpoint: a changed one is refused with its key named (rather than silently ignored). Every
        other value (``train.epochs``, ``max_steps``, the loss weights, ``data``, ``eval``...) applies
        from here on and is recorded in the next checkpoint and ``config.yaml``.
        """
        check_resume(self.config, state)
        unwrap_model(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.context.rank < len(state["rng"]):
            set_rng_state(state["rng"][self.context.rank])
        self.epoch = state["epoch"]
        self.global_step = state["global_step"]
        self.history = list(state["history"])
        self.best = state["metrics"]["best"]
        self._rewrite_log = True  # the history comes from the checkpoint: the log follows it at the next save

    def resume(self, path: str | Path | None = None) -> None:
        """Load ``path`` (default ``<train.out>/last.pt``); nothing is written until the next epoch ends.

        The log may hold a line for an epoch whose checkpoint was never written (a run killed between
        the two writes); the checkpoint's history is the truth, and replaces the log when the first
        resumed epoch is saved.
        """
        path = Path(path) if path is not None else self.out / LAST
        self.load_state_dict(load_checkpoint(path))


def build_trainer(
    config: Config,
    *,
    context: DistributedContext | None = None,
    evaluate: Evaluate | None = None,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> Trainer:
    """The detector, the set-prediction criterion and the training windows that ``config`` describes
    (``data.root``'s training subjects, or the synthetic set ``data`` describes, made when missing). The
    windows' clips travel as uint8 and are scaled and augmented on the training device."""
    context = context or DistributedContext(device=default_device())
    # Rank 0 first: it writes the synthetic set when it is missing, the others then only read it.
    if context.is_main:
        dataset = WindowDataset.from_config(config, "train", uint8=True)
    barrier(context)
    if not context.is_main:
        dataset = WindowDataset.from_config(config, "train", uint8=True)
    seed_everything(config.train.seed)
    model = Detector(config.model)
    criterion = SetCriterion(config.train, config.model.num_classes)
    if context.enabled:
        # Identical initial weights came from the shared seed; dropout should differ between processes.
        seed_everything(config.train.seed + 1000 * context.rank)
    return Trainer(
        config,
        model,
        criterion,
        dataset,
        collate_fn=collate,
        evaluate=evaluate,
        context=context,
        progress=progress,
        on_step=on_step,
    )


def train(
    config: Config,
    *,
    resume: bool | str | Path = False,
    evaluate: Evaluate | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> Trainer:
    """Train as ``config`` says, in one process or in each process of a ``torchrun`` job.

    ``resume``: False starts afresh (refusing a ``train.out`` that already holds a checkpoint), True
    continues from ``<train.out>/last.pt``, a path continues from that checkpoint. Writes ``last.pt``
    every epoch, ``best.pt`` when ``eval/<train.monitor>`` improves, and ``log.jsonl`` (which
    ``mgtutor.viz.training.save_training_curve`` draws). Raises :class:`NonFiniteLossError` when a
    loss stops being finite.
    """
    last = Path(config.train.out) / LAST
    if resume is False and last.exists():
        raise CheckpointError(
            f"{config.train.out} already holds a checkpoint ({last}); continue it with --resume "
            "or choose another train.out"
        )
    checkpoint = None if resume is False else last if resume is True else Path(resume)
    if checkpoint is not None and not checkpoint.is_file():
        raise CheckpointError(f"no checkpoint at {checkpoint} to resume from")
    # read and check the checkpoint before the data is touched: a refused resume costs nothing, writes nothing
    state = None if checkpoint is None else load_checkpoint(checkpoint)
    if state is not None:
        check_resume(config, state)
    context = init_distributed(device)
    try:
        trainer = build_trainer(config, context=context, evaluate=evaluate, progress=progress)
        if state is not None:
            trainer.load_state_dict(state)
        trainer.fit()
        barrier(context)  # no process leaves while another still writes
    finally:
        shutdown_distributed(context)
    return trainer

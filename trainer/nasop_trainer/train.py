"""One trial end to end: data -> model -> Lightning fit -> metrics reported -> result.

Lightning runs with its per-run overheads off (no logger of its own, checkpoints, model summary,
sanity validation, or progress bar unless stdout is a terminal) and its INFO banners silenced, so
stdout carries only the contract's ``NASOP1`` lines and the final JSON line that ``__main__``
prints. Training items are chunks of
mini-batches (``batches.Chunks``), so Lightning's progress bar and ``batch_idx`` count chunks;
``global_step`` still counts optimizer steps.

Launched by torchrun (``WORLD_SIZE`` > 1: ``trial.replicas`` x ``trial.procsPerReplica``), the
same run trains one model with Lightning's DDP over every process (gloo on CPU, NCCL on GPU):
each rank steps on its shard of the epoch (``batches.Chunks``), gradients are averaged, every
rank validates the whole validation split with the same weights, and only global rank 0
reports (``ranks.Ranks.reports``). Each rank ends with one stderr line holding a digest of its
weights, so that a test (or a person) sees that the ranks trained together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence

import lightning.pytorch as pl
import torch

from nasop_trainer import batches, cli, data, latency, metrics, model, network, ranks
from nasop_trainer.network import dtype_of, resolve_device  # kept importable from here

VAL_BATCH_SIZE = 4096  # validation has no gradients: few large batches are fastest


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from lightning.fabric.utilities.warnings import disable_possible_user_warnings

    disable_possible_user_warnings()  # e.g. "no workers" advice, which does not apply here
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning 2.6 on torch 2.13 calls a deprecated pytree API on every step; not ours to fix.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated", category=FutureWarning)


class EpochScalars(pl.Callback):
    """Reports the module's ``epoch_metrics()`` at step = epoch after each validation.

    Also keeps them in ``history`` and prints a one-line progress note to stderr.
    """

    def __init__(self, reporter: metrics.Reporter) -> None:
        self.reporter = reporter
        self.history: list[dict[str, float]] = []
        self._started = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning 2 validates before this hook, so train and val sums are both complete here.
        epoch = trainer.current_epoch
        # nasop's own module; Lightning types the hook's argument as the base class
        values = pl_module.epoch_metrics()  # type: ignore[operator]
        if trainer.world_size > 1 and "train_loss" in values:  # each rank saw its own shard
            mean = trainer.strategy.reduce(
                torch.tensor(values["train_loss"], dtype=torch.float64), reduce_op="mean"
            )
            values["train_loss"] = float(mean)
        self.reporter.epoch(epoch, values)
        self.history.append(values)
        if not self.reporter.silent:
            metrics.progress(epoch, values, time.perf_counter() - self._started)


def build_trainer(
    config: cli.Config,
    device: torch.device,
    callbacks: list[pl.Callback],
    where: ranks.Ranks | None = None,
) -> pl.Trainer:
    """A Lightning Trainer for one trial with everything the trial does not need switched off;
    DDP over torchrun's processes when ``where`` is a rank of a data-parallel trial."""
    where = where or ranks.Ranks()
    parallel: dict[str, object] = {"devices": 1}
    if where.distributed:  # Lightning reads torchrun's environment and joins its processes
        parallel = {
            "devices": where.local_world_size,
            "num_nodes": where.num_nodes,
            "strategy": "ddp",
        }
    return pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        **parallel,  # type: ignore[arg-type]
        max_epochs=config.params.epochs,
        logger=False,
        enable_checkpointing=config.checkpoint,
        enable_progress_bar=sys.stdout.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
        default_root_dir=str(config.log_dir),
        callbacks=callbacks,
    )


def _model(config: cli.Config, dataset: data.DataSet) -> model.MLP:
    p = config.params
    return model.MLP(
        dataset.input_dim,
        p.hidden_size_1,
        p.hidden_size_2,
        p.learning_rate,
        p.dropout,
        p.batch_size,
        dataset.num_classes,
    ).to(dtype_of(config))


def _announce(
    config: cli.Config, dataset: data.DataSet, device: torch.device, num_params: int
) -> None:
    """One line on stderr: what this trial trains, where, and where it logs."""
    print(
        f"nasop-trainer: experiment={config.experiment} trial={config.trial_index} "
        f"dataset={dataset.name} (train {len(dataset.train)}, val {len(dataset.val)}) "
        f"device={device} params={json.dumps(dataclasses.asdict(config.params))} "
        f"num_params={num_params} log_dir={config.log_dir}",
        file=sys.stderr,
        flush=True,
    )


def _digest(where: ranks.Ranks, module: model.MLP) -> None:
    """One stderr line per rank: the digest of its final weights (equal when in step)."""
    digest = ranks.weights_digest(module.parameters())
    print(
        f"nasop-trainer: rank {where.rank}/{where.world_size} weights sha256={digest}",
        file=sys.stderr,
        flush=True,
    )


def train(config: cli.Config, callbacks: Sequence[pl.Callback] = ()) -> dict[str, float | int]:
    """Trains one trial and reports its metrics (stdout, termination message, TensorBoard).

    Args:
        config: the parsed flags and environment.
        callbacks: extra Lightning callbacks (the benchmark's epoch timer).

    Returns:
        The final ``val_acc``, ``num_params`` and ``latency_ms`` (NaN on a rank that does not
        report: latency is measured by global rank 0 alone).

    Raises:
        errors.UsageError: the requested accelerator is not there.
        errors.DataMissingError: the data set is not there.
    """
    where = ranks.from_env()
    device, dataset = network.prepare(config, where.local_rank if where.distributed else None)
    _quiet_lightning()
    pl.seed_everything(config.seed, verbose=False)
    p = config.params
    module = _model(config, dataset)
    num_params = model.count_parameters(module)  # the one model's, whatever the world size
    if where.reports:
        _announce(config, dataset, device, num_params)

    reporter = metrics.Reporter(config.log_dir, silent=not where.reports)
    try:
        reporter.start(dataclasses.asdict(p), num_params)
        scalars = EpochScalars(reporter)
        trainer = build_trainer(config, device, [scalars, *callbacks], where)
        train_batches = batches.Chunks(
            dataset.train,
            p.batch_size,
            shuffle=True,
            seed=config.seed,
            per_chunk=batches.batches_per_chunk(p.batch_size),
            rank=where.rank,
            world=where.world_size,
        )
        val_batches = batches.Chunks(dataset.val, VAL_BATCH_SIZE, shuffle=False)
        trainer.fit(module, train_dataloaders=train_batches, val_dataloaders=val_batches)
        if where.distributed:
            _digest(where, module)
        latency_ms = float("nan")
        if where.reports:
            latency_ms = latency.measure_ms(
                module.model, dataset.input_dim, runs=config.latency_runs
            )
            reporter.final("latency_ms", latency_ms)
            metrics.write_termination(reporter.finals, reporter.seq)
    finally:
        reporter.close()
    return {
        "val_acc": scalars.history[-1]["val_acc"],
        "num_params": num_params,
        "latency_ms": latency_ms,
    }


__all__ = ["VAL_BATCH_SIZE", "EpochScalars", "build_trainer", "dtype_of", "resolve_device", "train"]

"""A packed trial: ``python -m nasop_trainer`` with ``NASOP_PACK`` trains several trials at once.

``NASOP_PACK`` is a JSON list of members ``{"trial": INDEX, "params": {...}, "logDir": DIR}``;
the flags (dataset, seed, threads, ...) are shared. Each member is its lone run, batched: its
initial weights are its lone model's with the same ``--seed``, it sees the same mini-batches,
has its own Adam learning rate and step count, and its loss's gradient is its own (the pack
minimises the sum of the members' mean losses, which does not couple them). Only dropout masks
come from the pack's own generator, so with dropout the runs agree in distribution, not bit for
bit. Members with the same batch size share every mini-batch and train as one ``packed.Stack``;
each batch size is one such group, trained after the other.

Each member writes the lone trial's TensorBoard scalars into its own ``logDir`` and records its
end there (``nasop.local.member_files``): ``completed`` once it has trained its epochs (then it is
evaluated, timed on its own unpadded network, and dropped from the stack), ``failed`` with a
one-line reason (a parameter it cannot train with), or ``stopped`` when the engine asked it to
stop (checked at every epoch boundary).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from nasop.local import member_files
from nasop_trainer import batches, cli, data, errors, latency, metrics, network, packed

VAL_ACTIVATIONS = 1 << 22  # hidden activations per validation batch, summed over the members


@dataclasses.dataclass(frozen=True)
class Member:
    """One trial of a pack, as ``NASOP_PACK`` lists it."""

    trial: str
    params: Mapping[str, Any]
    log_dir: Path

    @property
    def index(self) -> int | None:
        """The trial index the member reports under (``"m"`` of its lines), when it is one."""
        return int(self.trial) if self.trial.isdigit() else None


@dataclasses.dataclass(frozen=True)
class EpochReport:
    """What ``run``'s observer sees after each epoch of a group (tests compare it to lone runs).

    Attributes:
        epoch: the epoch just trained and validated.
        trials: the members still in the stack, in slot order.
        step_losses: each mini-batch's loss, (steps, members).
        stack: the stacked weights (``stack.network(slot)`` is a member's own network).
    """

    epoch: int
    trials: list[str]
    step_losses: torch.Tensor
    stack: packed.Stack


Observer = Callable[[EpochReport], None]
Ends = dict[int, dict[str, Any]]  # member index -> state, reason and final values


def parse_members(raw: str) -> list[Member]:
    """Reads ``NASOP_PACK``.

    Raises:
        errors.UsageError: not a non-empty JSON list of members with ``trial``, ``params``
            (an object) and ``logDir``, or two members with the same trial or logDir.
    """
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise errors.UsageError(f"NASOP_PACK is not valid JSON: {exc}") from None
    if not isinstance(loaded, list) or not loaded:
        raise errors.UsageError(
            "NASOP_PACK must be a non-empty JSON list of members",
            hint='each {"trial": INDEX, "params": {...}, "logDir": DIR}',
        )
    members = []
    for position, item in enumerate(loaded):
        if (
            not isinstance(item, dict)
            or "trial" not in item
            or not item.get("logDir")
            or not isinstance(item.get("params", {}), dict)
        ):
            raise errors.UsageError(
                f"NASOP_PACK[{position}] is not a member",
                hint='each {"trial": INDEX, "params": {...}, "logDir": DIR}',
            )
        members.append(Member(str(item["trial"]), item.get("params", {}), Path(item["logDir"])))
    for key in ("trial", "log_dir"):
        values = [getattr(m, key) for m in members]
        if len(set(values)) < len(values):
            raise errors.UsageError(f"NASOP_PACK lists the same {key} twice")
    return members


def run(
    config: cli.Config, members: Sequence[Member], observe: Observer | None = None
) -> dict[str, dict[str, Any]]:
    """Trains every member and records each one's end in its log dir.

    Args:
        config: the shared flags (dataset, seed, threads, accelerator, precision); its own
            parameters and log dir are not used.
        members: the pack.
        observe: called after every epoch of every group.

    Returns:
        Per trial: ``state`` and, when completed, ``val_acc``, ``num_params``, ``latency_ms``.

    Raises:
        errors.UsageError: the requested accelerator is not there.
        errors.DataMissingError: the data set is not there.
    """
    device, dataset = network.prepare(config)
    results: dict[str, dict[str, Any]] = {}
    ends: Ends = {}
    groups: dict[int, list[tuple[Member, cli.Params]]] = {}
    for member in members:
        try:
            params = cli.params_from(member.params, f"NASOP_PACK member {member.trial}")
        except errors.UsageError as exc:
            member_files.write_end(str(member.log_dir), member_files.FAILED, str(exc))
            metrics.Reporter(None, member=member.index).end(member_files.FAILED, str(exc))
            if member.index is not None:
                ends[member.index] = {"state": member_files.FAILED, "reason": str(exc)}
            results[member.trial] = {"state": member_files.FAILED, "reason": str(exc)}
            continue
        groups.setdefault(params.batch_size, []).append((member, params))
    print(
        f"nasop-trainer: pack of {len(members)} ({len(groups)} batch size(s)) "
        f"dataset={dataset.name} device={device}",
        file=sys.stderr,
        flush=True,
    )
    try:
        for batch_size in sorted(groups):
            results.update(_run_group(config, dataset, groups[batch_size], observe, ends))
    finally:
        metrics.write_pack_termination(ends)
    return results


class _Slot:
    """A member's bookkeeping while it is in the stack: its writer and its epochs to go."""

    def __init__(self, member: Member, params: cli.Params, num_params: int, ends: Ends) -> None:
        self.member, self.params, self.num_params, self.ends = member, params, num_params, ends
        self.reporter = metrics.Reporter(member.log_dir, member=member.index)
        self.reporter.start(dataclasses.asdict(params), num_params)
        self.last: dict[str, float] = {}

    def end(self, state: str, reason: str = "", **result: Any) -> dict[str, Any]:
        self.reporter.end(state, reason)
        self.reporter.close()
        if self.member.index is not None:
            self.ends[self.member.index] = {
                "state": state,
                "reason": reason,
                "final": self.reporter.finals,
                "lines": self.reporter.seq,
            }
        member_files.write_end(str(self.member.log_dir), state, reason)
        return {"state": state, **({"reason": reason} if reason else {}), **result}


def _lone_network(
    config: cli.Config, dataset: data.DataSet, params: cli.Params
) -> torch.nn.Sequential:
    """The member's lone model as its own run would build it: same seed, same draws."""
    torch.manual_seed(config.seed)
    lone = network.build_network(
        dataset.input_dim,
        params.hidden_size_1,
        params.hidden_size_2,
        params.dropout,
        dataset.num_classes,
    )
    return lone.to(dtype=network.dtype_of(config), device=dataset.train.x.device)


def _run_group(
    config: cli.Config,
    dataset: data.DataSet,
    group: list[tuple[Member, cli.Params]],
    observe: Observer | None,
    ends: Ends,
) -> dict[str, dict[str, Any]]:
    """Trains members that share a batch size as one stack until each has ended."""
    lones = [_lone_network(config, dataset, params) for _, params in group]
    slots = [_Slot(m, p, network.count_parameters(n), ends) for (m, p), n in zip(group, lones)]
    stack = packed.Stack(
        lones, [packed.Shape(p.hidden_size_1, p.hidden_size_2, p.dropout) for _, p in group]
    )
    adam = packed.Adam(stack, [p.learning_rate for _, p in group])
    del lones
    batch_size = group[0][1].batch_size
    device = dataset.train.x.device
    dropout_draws = torch.Generator(device=device).manual_seed(config.seed)
    chunks = batches.Chunks(
        dataset.train,
        batch_size,
        shuffle=True,
        seed=config.seed,
        per_chunk=batches.batches_per_chunk(batch_size),
    )
    results: dict[str, dict[str, Any]] = {}
    epoch = 0
    try:
        while slots:
            started = time.perf_counter()
            step_losses, sizes = _train_epoch(stack, adam, chunks, batch_size, dropout_draws)
            train_loss = (step_losses.double().T @ sizes.double()) / float(sizes.sum())
            val_loss, val_acc = _evaluate(stack, dataset.val)
            seconds = time.perf_counter() - started
            for slot, entry in enumerate(slots):
                entry.last = {
                    "train_loss": float(train_loss[slot]),
                    "val_loss": float(val_loss[slot]),
                    "val_acc": float(val_acc[slot]),
                }
                entry.reporter.epoch(epoch, entry.last)
                metrics.progress(epoch, entry.last, seconds, f"trial {entry.member.trial} ")
            if observe is not None:
                observe(EpochReport(epoch, [s.member.trial for s in slots], step_losses, stack))
            keep = []
            for slot, entry in enumerate(slots):
                outcome = _epoch_end(config, dataset, stack, slot, entry, epoch)
                if outcome is None:
                    keep.append(slot)
                else:
                    results[entry.member.trial] = outcome
            if len(keep) < len(slots) and keep:
                stack.keep(keep)
                adam.keep(keep)
            slots = [slots[i] for i in keep]
            epoch += 1
    finally:
        for entry in slots:
            # a crash leaves these members without an end: the engine retries them
            entry.reporter.close()
    return results


def _epoch_end(
    config: cli.Config,
    dataset: data.DataSet,
    stack: packed.Stack,
    slot: int,
    entry: _Slot,
    epoch: int,
) -> dict[str, Any] | None:
    """The member's end after ``epoch``, or None when it trains on."""
    if epoch + 1 >= entry.params.epochs:
        latency_ms = latency.measure_ms(
            stack.network(slot), dataset.input_dim, runs=config.latency_runs
        )
        entry.reporter.final("latency_ms", latency_ms)
        return entry.end(
            member_files.COMPLETED,
            val_acc=entry.last["val_acc"],
            num_params=entry.num_params,
            latency_ms=latency_ms,
        )
    reason = member_files.stop_reason(str(entry.member.log_dir), entry.member.index)
    if reason is not None:
        return entry.end(member_files.STOPPED, reason or f"stop requested after epoch {epoch}")
    return None


def _train_epoch(
    stack: packed.Stack,
    adam: packed.Adam,
    chunks: batches.Chunks,
    batch_size: int,
    dropout_draws: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of mini-batch steps; each step's per-member losses and the batch sizes."""
    losses, sizes = [], []
    for chunk in chunks:
        for x, y in batches.mini_batches(chunk, batch_size):
            log_probs = stack.forward(x, train=True, generator=dropout_draws)
            picked = log_probs.gather(2, y.view(1, -1, 1).expand(len(stack), -1, 1))
            member_losses = -picked.squeeze(2).mean(dim=1)
            adam.zero_grad()
            member_losses.sum().backward()
            stack.mask_gradients()
            adam.step()
            losses.append(member_losses.detach())
            sizes.append(int(y.shape[0]))
    return torch.stack(losses), torch.tensor(sizes, device=losses[0].device)


@torch.no_grad()
def _evaluate(stack: packed.Stack, split: data.Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's mean validation loss and accuracy, (M,) each."""
    widest = stack.params["w1"].shape[2]
    rows = max(64, VAL_ACTIVATIONS // (len(stack) * widest))
    loss_sum = torch.zeros(len(stack), dtype=split.x.dtype, device=split.x.device)
    correct = torch.zeros(len(stack), dtype=torch.int64, device=split.x.device)
    for start in range(0, len(split), rows):
        x, y = split.x[start : start + rows], split.y[start : start + rows]
        log_probs = stack.forward(x)
        targets = y.view(1, -1, 1).expand(len(stack), -1, 1)
        loss_sum -= log_probs.gather(2, targets).squeeze(2).sum(dim=1)
        correct += (log_probs.argmax(dim=2) == y.view(1, -1)).sum(dim=1)
    return loss_sum.double() / len(split), correct.double() / len(split)


__all__ = ["EpochReport", "Member", "Observer", "parse_members", "run"]

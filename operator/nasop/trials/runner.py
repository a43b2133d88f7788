"""An Ax Runner that launches each trial through TorchX, keeping only strings in trial metadata.

Ax's stock TorchXRunner stores a live runner object in `run_metadata`, so JSON/SQL saves fail and
nothing can be polled after a restart. Here `run_metadata` holds the app handle and the log
directory (strings), and the TorchX session is rebuilt lazily, or injected by the operator with a
Kubernetes client built from its own configuration. The runner also reads what each trial
reported (`read_output`: a local stdout file, or the trial's pod), for the trial metric. In a
cluster a trial whose job ended is reported ended only once its pods' output has been read to its
end (`observe`, harvest.py); its pods are let go of after the save that records it
(`release_harvested`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ax.core.base_trial import BaseTrial, TrialStatus
from ax.core.runner import Runner
from torchx import runner as torchx_runner
from torchx import specs
from torchx.schedulers import get_scheduler_factories
from torchx.schedulers.api import Stream

from nasop import spec
from nasop.local import member_files
from nasop.results import Collector
from nasop.trials import appdef, local_markers, packs, torchrun_report
from nasop.trials.forkserver_process import ForkServer
from nasop.trials.harvest import Harvester
from nasop.trials.metric import RUN_METADATA_KEY
from nasop.trials.output import LocalOutput
from nasop.trials.stops import StopRequests

log = logging.getLogger(__name__)

APP_HANDLE = "app_handle"
LOG_DIR = RUN_METADATA_KEY
JOB_UID = "job_uid"  # a cluster trial's job uid: its pods are found by it even once it is gone

#: launched, not started: its pods wait to be scheduled, admitted or pulled (the reason is in
#: the app status's msg, see waiting.py)
_PENDING_STATES = {
    specs.AppState.UNSUBMITTED,
    specs.AppState.SUBMITTED,
    specs.AppState.PENDING,
    specs.AppState.UNKNOWN,  # e.g. a Volcano job with no status yet: not a failure
}
_RUNNING_STATES = {specs.AppState.RUNNING, *_PENDING_STATES}


@dataclass(frozen=True)
class TrialObservation:
    """What the scheduler says about one trial right now."""

    status: TrialStatus
    reason: str = ""  # why it ended; while pending, why it waits ("" when not known)
    infrastructure: bool = False  # vanished/evicted rather than a non-zero exit
    #: RUNNING only: launched but not started (its pods do not run yet); None: not known now
    pending: bool | None = False
    retry: bool = True  # infrastructure only: run the arm again (False: its output was lost)


TorchXFactory = Callable[[], torchx_runner.Runner]


def _keeping_signal_handlers(make: Callable[..., Any]) -> Callable[..., Any]:
    """TorchX's local scheduler replaces SIGINT/SIGTERM with handlers that raise SignalException,
    an ordinary Exception that any broad `except Exception` swallows, so Ctrl-C could be lost.
    Put the caller's handlers back once the scheduler exists: Ctrl-C stays a KeyboardInterrupt."""

    def wrapped(session_name: str, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return make(session_name, **kwargs)  # only the main thread can (re)set handlers
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return make(session_name, **kwargs)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    return wrapped


def default_torchx_runner() -> torchx_runner.Runner:
    """TorchX's stock schedulers, the local ones without their signal handlers."""
    factories = get_scheduler_factories()
    for name in appdef.LOCAL_SCHEDULERS:
        if name in factories:
            factories[name] = _keeping_signal_handlers(factories[name])
    return torchx_runner.Runner("torchx", scheduler_factories=factories)


class TorchXTrialRunner(Runner):
    """Launches trials as TorchX apps (`local_cwd` locally, `kubernetes` in a cluster)."""

    def __init__(
        self,
        scheduler: str,
        template: dict[str, Any],
        log_root: str,
        experiment_name: str,
        scheduler_cfg: dict[str, Any] | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        self.scheduler = scheduler
        self.template = template
        self.log_root = log_root
        self.experiment_name = experiment_name
        self.scheduler_cfg = dict(scheduler_cfg or {})
        self._torchx: torchx_runner.Runner | None = None
        self._factory: TorchXFactory | None = None
        self._finder: Callable[[int], str | None] | None = None
        #: when the search's time is up (epoch seconds; inf: never): a cluster scheduler that can
        #: enforce it (kubernetes_job: activeDeadlineSeconds) is told the time left at each
        #: launch. A float, not a callable: Ax's SQL store compares a saved runner's attributes
        #: with the live one's by type.
        self.deadline = math.inf
        self._pack_finder: Callable[[int], tuple[str, list[int]] | None] | None = None
        self._harvester: Harvester | None = None
        self._outputs: dict[str, Any] = {}  # a trial's or pack's folder -> its output reader
        self._stops: StopRequests | None = None  # a cluster's stop requests to pack members
        self.preload = list(preload)  # modules the local fork server imports once for all trials
        self.fork_server = (
            ForkServer(self.preload, os.path.join(log_root, experiment_name, "forkserver.log"))
            if self.preload and self.is_local
            else None
        )

    # -- session -------------------------------------------------------------------------

    def bind(
        self,
        factory: TorchXFactory,
        finder: Callable[[int], str | None] | None = None,
        pack_finder: Callable[[int], tuple[str, list[int]] | None] | None = None,
        harvester: Harvester | None = None,
        stops: StopRequests | None = None,
    ) -> None:
        """Use this TorchX runner factory (the operator passes one with its own API client),
        and `finder(trial_index)` to look up a job launched before a crash lost its record
        (`pack_finder`: the pack job holding that trial, and its members); `harvester` reads
        cluster trials' pods and lets go of them once their trials are recorded; `stops`
        carries a stop request to a pack member's pod (its ConfigMap, mounted read-only)."""
        self._factory = factory
        self._finder = finder
        self._pack_finder = pack_finder
        self._harvester = harvester
        self._stops = stops
        self._torchx = None
        self._outputs.clear()

    def adopt(self, trial: BaseTrial) -> dict[str, Any] | None:
        """Run metadata of an already-launched app for this trial, if one exists."""
        log_dir = appdef.trial_log_dir(self.log_root, self.experiment_name, trial.index)
        marked = packs.marked_pack(log_dir) if self.is_local else None
        if marked:  # a pack member: its pack's wrapper markers say whether the pack started
            folder = marked[packs.PACK_DIR]
            if local_markers.exit_code(folder) is not None or local_markers.is_running(folder):
                handle = f"local_cwd://nasop/orphan-{os.path.basename(folder)}"
                return {APP_HANDLE: handle, LOG_DIR: log_dir, **marked}
            return None
        if self.is_local:
            if local_markers.exit_code(log_dir) is not None or local_markers.is_running(log_dir):
                return {APP_HANDLE: f"local_cwd://nasop/orphan-{trial.index}", LOG_DIR: log_dir}
            return None
        if self.trial_template.pack is not None and self._pack_finder is not None:
            found = self._pack_finder(trial.index)
            if found:
                handle, indices = found
                folder = packs.pack_dir(self.log_root, self.experiment_name, min(indices))
                dirs = [
                    appdef.trial_log_dir(self.log_root, self.experiment_name, i) for i in indices
                ]
                meta = {APP_HANDLE: handle, LOG_DIR: log_dir, **packs.member_metadata(folder, dirs)}
                return {**meta, **self._job_uid(handle)}
        found_handle = self._finder(trial.index) if self._finder else None
        if not found_handle:
            return None
        return {APP_HANDLE: found_handle, LOG_DIR: log_dir, **self._job_uid(found_handle)}

    def _job_uid(self, handle: str) -> dict[str, str]:
        """The job uid to record beside a cluster trial's handle (nothing when not known)."""
        uid = self._harvester.job_uid(handle) if self._harvester and not self.is_local else None
        return {JOB_UID: uid} if uid else {}

    @property
    def torchx(self) -> torchx_runner.Runner:
        if self._torchx is None:
            self._torchx = self._factory() if self._factory else default_torchx_runner()
        return self._torchx

    def close(self) -> None:
        if self.fork_server is not None:
            self.fork_server.close()
        if self._torchx is not None:
            self._torchx.close()
            self._torchx = None

    @property
    def trial_template(self) -> spec.TrialTemplate:
        return spec.TrialTemplate.model_validate(self.template)

    # -- Ax Runner API -------------------------------------------------------------------

    def run(self, trial: BaseTrial) -> dict[str, Any]:
        """Submit the trial; returns only strings for `trial.run_metadata`."""
        parameters = dict(trial.arm.parameters)  # type: ignore[attr-defined]  # one-arm Trials
        log_dir = appdef.trial_log_dir(self.log_root, self.experiment_name, trial.index)
        if self.is_local:
            os.makedirs(log_dir, exist_ok=True)
        app = appdef.trial_to_appdef(
            self.trial_template,
            experiment=self.experiment_name,
            trial_index=trial.index,
            parameters=parameters,
            log_dir=log_dir,
            scheduler=self.scheduler,
            local_env=self.fork_server.env() if self.fork_server else None,
        )
        cfg = dict(self.scheduler_cfg)
        if not self.is_local and math.isfinite(self.deadline):
            cfg["active_deadline_seconds"] = max(1, math.ceil(self.deadline - time.time()))
        handle = self.torchx.run(app, scheduler=self.scheduler, cfg=cfg)
        log.info("trial %d launched as %s", trial.index, handle)
        return {APP_HANDLE: str(handle), LOG_DIR: log_dir, **self._job_uid(str(handle))}

    def run_pack(self, trials: Sequence[BaseTrial]) -> dict[int, dict[str, Any]]:
        """Submit these trials as one pack (one app); each trial's run metadata."""
        members = []
        for trial in trials:
            log_dir = appdef.trial_log_dir(self.log_root, self.experiment_name, trial.index)
            if self.is_local:
                os.makedirs(log_dir, exist_ok=True)
            parameters = dict(trial.arm.parameters)  # type: ignore[attr-defined]  # one-arm Trials
            members.append((trial.index, parameters, log_dir))
        folder = packs.pack_dir(self.log_root, self.experiment_name, members[0][0])
        if self.is_local:
            packs.mark_members(members, folder)
        if self._stops is not None:
            self._stops.ensure()
        app = packs.pack_to_appdef(
            self.trial_template,
            experiment=self.experiment_name,
            members=members,
            folder=folder,
            scheduler=self.scheduler,
            local_env=self.fork_server.env() if self.fork_server else None,
            stops_configmap=self._stops.name if self._stops is not None else None,
        )
        handle = self.torchx.run(app, scheduler=self.scheduler, cfg=self.scheduler_cfg)
        log.info("trials %s launched as one pack %s", [m[0] for m in members], handle)
        extra = {
            **packs.member_metadata(folder, [m[2] for m in members]),
            **self._job_uid(str(handle)),
        }
        return {i: {APP_HANDLE: str(handle), LOG_DIR: d, **extra} for i, _, d in members}

    def poll_trial_status(self, trials: Iterable[BaseTrial]) -> dict[TrialStatus, set[int]]:
        out: dict[TrialStatus, set[int]] = {}
        for trial, obs in self.observe(trials).items():
            out.setdefault(obs.status, set()).add(trial)
        return out

    def stop(self, trial: BaseTrial, reason: str | None = None) -> dict[str, Any]:
        """Cancel the trial's app; idempotent. A pack member is asked to stop alone; its pack
        is cancelled once none of its members is left to train."""
        if trial.run_metadata.get(packs.PACK_DIR):
            if self._stops is None:
                member_files.request_stop(trial.run_metadata[LOG_DIR], reason or "")
            else:
                self._stops.request(trial.index, reason or "")
            if self._pack_done(trial):
                pack_app = _PackApp(trial.run_metadata)
                self.stop(pack_app, reason)  # type: ignore[arg-type]  # duck-typed as a trial
            return {"stop_reason": reason or ""}
        handle = trial.run_metadata.get(APP_HANDLE)
        if handle:
            try:
                self.torchx.cancel(handle)
            except Exception as e:  # cancel must not raise: the app may be gone already
                log.warning("cancel of trial %s (%s) failed: %s", trial.index, handle, e)
            if self._harvester is not None and not self.is_local:
                self._harvester.queue(handle)  # its pods go once the stop is saved
                self._outputs.pop(trial.run_metadata.get(LOG_DIR, ""), None)
        if self.is_local and trial.run_metadata.get(LOG_DIR):
            local_markers.terminate(trial.run_metadata[LOG_DIR])  # an orphan from an earlier run
            local_markers.record_cancelled(trial.run_metadata[LOG_DIR])
        return {"stop_reason": reason or ""}

    def _pack_done(self, trial: BaseTrial) -> bool:
        """Every member of this trial's pack has ended or been asked to stop."""
        siblings = json.loads(trial.run_metadata[packs.PACK_SIBLINGS])
        if self._stops is None:
            return packs.all_done(siblings)
        reader = self._outputs.get(trial.run_metadata[packs.PACK_DIR])
        ended = set(reader.collector.ends) if reader is not None else set()
        indexes = {appdef.trial_index_of(d) for d in siblings}
        return indexes <= ended | self._stops.requested()

    def _member_end(self, trial: BaseTrial, refresh: bool) -> dict[str, str] | None:
        """How a pack member said it ended: in its pack's output (read again when `refresh`),
        else (locally, or with TensorBoard metrics) in its end file; None while it has not."""
        reader = self._reader(trial)
        if reader is not None:
            collector = reader.read() if refresh else reader.collector
            if trial.index in collector.ends:
                state, reason = collector.ends[trial.index]
                return {"state": state, "reason": reason}
        if self.is_local or reader is None:
            return member_files.read_end(trial.run_metadata[LOG_DIR])
        return None

    # -- output --------------------------------------------------------------------------

    def read_output(self, trial: BaseTrial) -> tuple[Collector, int | None] | None:
        """What the trial has reported so far and its member index in that output (None for a
        lone trial); None when its metrics come from TensorBoard files instead."""
        reader = self._reader(trial)
        if reader is None:
            return None
        collector = reader.read()
        uid = getattr(reader, "job_uid", None)
        if uid and not trial.run_metadata.get(JOB_UID):  # launched by a nasop that kept none
            trial.update_run_metadata({JOB_UID: uid})
        return collector, trial.index if trial.run_metadata.get(packs.PACK_DIR) else None

    def _reader(self, trial: BaseTrial) -> Any:
        """The trial's (or its pack's) output reader, made at first use; None when its metrics
        come from TensorBoard files."""
        template = self.trial_template
        if template.metrics_format == "tensorboard":
            return None
        meta = trial.run_metadata
        folder = meta.get(packs.PACK_DIR) or meta.get(LOG_DIR, "")
        reader = self._outputs.get(folder)
        if reader is None:
            members = None
            if meta.get(packs.PACK_DIR):
                siblings = json.loads(meta.get(packs.PACK_SIBLINGS) or "[]")
                members = [appdef.trial_index_of(d) for d in siblings]
            collector = Collector(trial.experiment.metrics, template.metrics_format, members)
            if self.is_local or self._harvester is None:
                reader = LocalOutput(folder, collector)
            else:
                handle = meta.get(APP_HANDLE, "")
                reader = self._harvester.reader(handle, collector, meta.get(JOB_UID))
            self._outputs[folder] = reader
        return reader

    def forget_output(self, trial: BaseTrial) -> str:
        """Drop the reader of an ended lone trial (a pack's stays while members run); returns
        what its output had refused (lines by reason, sequence gaps), "" when nothing."""
        meta = trial.run_metadata
        if meta.get(packs.PACK_DIR):
            reader = self._outputs.get(meta[packs.PACK_DIR])
        else:
            reader = self._outputs.pop(meta.get(LOG_DIR, ""), None)
        if self._harvester is not None and not self.is_local:
            self._harvester.queue(meta.get(APP_HANDLE, ""))  # released once the end is saved
        return reader.collector.problems() if reader is not None else ""

    def release_harvested(self, ended: Callable[[int], bool]) -> None:
        """After a save: let go of the pods of trials whose end it recorded (`ended(index)`);
        the first call also sweeps pods left held by an earlier operator. Never raises."""
        if self._harvester is not None and not self.is_local:
            self._harvester.release(ended)

    @property
    def run_metadata_report_keys(self) -> list[str]:
        return [APP_HANDLE, LOG_DIR]

    # -- observation ---------------------------------------------------------------------

    def observe(self, trials: Iterable[BaseTrial]) -> dict[int, TrialObservation]:
        """Each trial's state; never raises for one bad trial."""
        out: dict[int, TrialObservation] = {}
        pack_states: dict[str, TrialObservation] = {}
        for trial in trials:
            handle = trial.run_metadata.get(APP_HANDLE)
            if handle and trial.run_metadata.get(packs.PACK_DIR):
                refresh = handle not in pack_states  # the pack's output is read once per look
                if refresh:
                    pack_app = _PackApp(trial.run_metadata)  # duck-typed: its index is `handle`
                    seen = self.observe([pack_app])  # type: ignore[list-item]  # duck-typed
                    pack_states.update(seen.items())  # type: ignore[arg-type]  # handle keys
                pack = pack_states[handle]
                status, reason, infra = packs.member_status(
                    self._member_end(trial, refresh),
                    (pack.status, pack.reason, pack.infrastructure),
                )
                if status is TrialStatus.RUNNING and pack.pending is not False:
                    reason = pack.reason  # the pack's pod waits: so does each member
                pending = pack.pending if status is TrialStatus.RUNNING else False
                out[trial.index] = TrialObservation(status, reason, infra, pending)
                continue
            if not handle:
                out[trial.index] = TrialObservation(
                    TrialStatus.FAILED, "trial has no app handle", infrastructure=True
                )
                continue
            try:
                status = self.torchx.status(handle)
            except Exception as e:  # scheduler unreachable: keep it running, look again later
                log.warning("status of %s failed: %s", handle, e)
                out[trial.index] = TrialObservation(TrialStatus.RUNNING, pending=None)
                continue
            if status is None and self.is_local:
                out[trial.index] = self._classify_orphan(trial, handle)
                continue
            obs = self._classify(trial, handle, status)
            if obs.status is not TrialStatus.RUNNING and not self.is_local:
                obs = self._harvested(trial, handle, obs, vanished=status is None)
            out[trial.index] = obs
        return out

    def _harvested(
        self, trial: BaseTrial, handle: str, obs: TrialObservation, vanished: bool
    ) -> TrialObservation:
        """An ended cluster trial as its pods tell it, once their output is read to its end:
        RUNNING ("reading its output") until then. A trial whose output was lost (its pods
        deleted first) fails with that reason and is not run again, unless its pods had
        exited 0 and their final values were read: then it completes from those."""
        if self._harvester is None or isinstance(trial, _PackApp):
            return obs  # a pack's members end through their own end lines (packs.member_status)
        reader = self._reader(trial)
        if reader is None or obs.status is TrialStatus.ABANDONED:
            return obs  # TensorBoard files (on a volume), or cancelled/evicted: retried
        harvest = reader.harvest()
        if not harvest.done:
            return TrialObservation(TrialStatus.RUNNING, "reading its output")
        codes = list(harvest.exit_codes.values())
        exited_0 = bool(codes) and all(c == 0 for c in codes)
        if harvest.lost:
            reader.collector.rejected[harvest.lost] += 1  # said with the trial's refusals
        if obs.status is TrialStatus.FAILED and not vanished:
            return obs  # the trainer failed: its own reason
        if exited_0 and harvest.final:
            return TrialObservation(TrialStatus.COMPLETED)  # its final values were read
        if harvest.lost:
            return TrialObservation(TrialStatus.FAILED, harvest.lost, True, retry=False)
        if vanished:  # a job deleted by someone else: whatever the exit code, not a verdict
            job = handle.rsplit(":", 1)[-1]
            why = f"job {job} was deleted before the trial ended" + (
                f" (exit code {codes[0]})" if codes else ""
            )
            return TrialObservation(TrialStatus.FAILED, why, True, retry=False)
        return obs

    @property
    def is_local(self) -> bool:
        return self.scheduler in appdef.LOCAL_SCHEDULERS

    def _classify_orphan(self, trial: BaseTrial, handle: str) -> TrialObservation:
        """A local trial started by an earlier process: read the markers it left."""
        log_dir = trial.run_metadata.get(LOG_DIR, "")
        rc = local_markers.exit_code(log_dir)
        if rc == 0:
            return TrialObservation(TrialStatus.COMPLETED)
        if rc is not None and rc in (-15, -2, 143, 130):
            return TrialObservation(TrialStatus.ABANDONED, "cancelled", infrastructure=True)
        if rc is not None:
            return TrialObservation(TrialStatus.FAILED, f"trainer exited with code {rc}")
        if local_markers.is_running(log_dir):
            return TrialObservation(TrialStatus.RUNNING)
        return TrialObservation(
            TrialStatus.FAILED,
            f"local trial {handle} was interrupted (its process is gone and left no exit code)",
            infrastructure=True,
        )

    def _classify(
        self, trial: BaseTrial, handle: str, status: specs.AppStatus | None
    ) -> TrialObservation:
        if status is None:
            return TrialObservation(
                TrialStatus.FAILED,
                f"app {handle} vanished from the scheduler without a cancel",
                infrastructure=True,
            )
        if status.state in _PENDING_STATES and not self.is_local:  # a local process runs at once
            why = (status.msg or "").strip()
            return TrialObservation(
                TrialStatus.RUNNING, "" if why == "<NONE>" else why, pending=True
            )
        if status.state in _RUNNING_STATES:
            return TrialObservation(TrialStatus.RUNNING)
        if status.state == specs.AppState.SUCCEEDED:
            return TrialObservation(TrialStatus.COMPLETED)
        if status.state == specs.AppState.CANCELLED:
            return TrialObservation(
                TrialStatus.ABANDONED, status.msg or "cancelled", infrastructure=True
            )  # e.g. an evicted pod: retried
        return TrialObservation(TrialStatus.FAILED, self._failure_reason(handle, status))

    def _failure_reason(self, handle: str, status: specs.AppStatus) -> str:
        """The last stderr line of the trainer is usually the one clear error line; of a
        distributed trial, that of the first replica that failed, named in the reason."""
        failed = sorted(
            r.id for role in status.roles for r in role.replicas if r.state == specs.AppState.FAILED
        )
        replicas = sum(len(role.replicas) for role in status.roles)
        if replicas > 1 and failed:  # the replica torchrun reported a failed rank in
            logs = {k: self._log_lines(handle, k) for k in failed[:8]}
            k = next(
                (k for k, lines in logs.items() if torchrun_report.has_report(lines)), failed[0]
            )
            reason = torchrun_report.reason(logs[k])
            exit_ = next(
                (
                    r.structured_error_msg
                    for role in status.roles
                    for r in role.replicas
                    if r.id == k
                ),
                specs.NONE,
            )
            if exit_ != specs.NONE and not torchrun_report.has_report(logs[k]):
                # killed, not failed by itself (no torchrun report): its end says more than
                # whatever line it printed last
                reason = f"{exit_}; its last line: {reason}" if reason else exit_
        else:
            k = 0
            reason = torchrun_report.reason(self._log_lines(handle, 0))
        if not reason:
            reason = (status.structured_error_msg or status.msg or "").strip()
            if reason in ("", "<NONE>"):
                reason = f"trial app {handle} failed"
        if replicas > 1 and failed:
            reason = f"replica {k} of {replicas} failed: {reason}"
        return reason[:500]

    def _log_lines(self, handle: str, k: int) -> list[str]:
        for stream in (Stream.STDERR, Stream.COMBINED):
            try:
                lines = list(self.torchx.log_lines(handle, "trainer", k=k, streams=stream))
            except Exception:  # logs are best effort (kubernetes has only COMBINED)
                continue
            lines = [ln.rstrip() for ln in torchrun_report.log_lines(lines) if ln.strip()]
            if lines:
                return lines
        return []


class _PackApp:
    """A pack's app seen as a lone trial (its own folder's markers), to reuse lone-trial logic."""

    def __init__(self, member_metadata: dict[str, Any]) -> None:
        self.index = member_metadata[APP_HANDLE]  # keyed by handle in `observe`'s answer
        self.run_metadata = {
            APP_HANDLE: member_metadata[APP_HANDLE],
            LOG_DIR: member_metadata[packs.PACK_DIR],
        }


__all__ = [
    "APP_HANDLE",
    "JOB_UID",
    "LOG_DIR",
    "TorchXTrialRunner",
    "TrialObservation",
    "default_torchx_runner",
]

"""Prometheus metrics on /metrics: experiments by phase, trials by state, generation seconds,
reconcile errors."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

EXPERIMENTS = Gauge("nasop_experiments", "NASExperiments by phase", ["phase"])
TRIALS = Gauge("nasop_trials", "Trials by state", ["namespace", "experiment", "state"])
GENERATION_SECONDS = Histogram(
    "nasop_generation_seconds",
    "Seconds per generation step (Ax gen)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
RECONCILE_ERRORS = Counter(
    "nasop_reconcile_errors_total", "Errors while driving experiments", ["kind"]
)

_phases: dict[tuple[str, str], str] = {}


def set_phase(namespace: str, name: str, phase: str | None) -> None:
    if phase is None:
        _phases.pop((namespace, name), None)
    else:
        _phases[(namespace, name)] = phase
    counts: dict[str, int] = {}
    for p in _phases.values():
        counts[p] = counts.get(p, 0) + 1
    for p in ("Pending", "Running", "Succeeded", "Failed", "Suspended", "Invalid"):
        EXPERIMENTS.labels(phase=p).set(counts.get(p, 0))


def set_trials(namespace: str, name: str, counts: dict[str, int]) -> None:
    for state, n in counts.items():
        TRIALS.labels(namespace=namespace, experiment=name, state=state).set(n)


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)

"""`nasop run | status | report | validate | crd | operator`, also as `kubectl nasop ...`.

`status` and `report` read a local search (a manifest FILE and its state dir) or, read-only, a
cluster experiment (`NAMESPACE/NAME`: report/cluster.py).

Heavy imports (Ax, TorchX, kopf) happen inside the commands that need them, so `nasop validate`
and `nasop --help` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import yaml

from nasop import __version__, errors, spec

if TYPE_CHECKING:
    from nasop.engine.search import Search


def quiet_libraries() -> None:
    """Ax logs every generation step at INFO; a user wants nasop's own lines."""
    import logging
    import warnings

    # logged while Ax is imported, before its levels can be set: drop that one logger's records
    logging.getLogger("ax.storage.sqa_store.with_db_settings_base").disabled = True
    from ax.utils.common.logger import set_ax_logger_levels, set_stderr_log_level

    set_ax_logger_levels(logging.WARNING)
    set_stderr_log_level(logging.WARNING)
    for name in ("torchx", "lightning", "tensorboard"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="ax")


def _print_err(e: errors.NasopError) -> None:
    print(f"error: {e.message}", file=sys.stderr)
    if e.hint:
        print(f"hint: {e.hint}", file=sys.stderr)


# ----------------------------------------------------------------------------- validate / crd


def cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        try:
            m = spec.load_manifest(path)
        except errors.SpecError as e:
            bad += 1
            print(f"{path}: invalid", file=sys.stderr)
            for line in e.message.split("; "):
                print(f"  {line}", file=sys.stderr)
            continue
        print(
            f"{path}: valid ({m.name}: {len(m.spec.search_space)} parameters, "
            f"{len(m.spec.objectives)} objectives, {m.spec.budget.max_trials} trials)"
        )
    return 1 if bad else 0


def cmd_crd(args: argparse.Namespace) -> int:
    from nasop import crd

    text = crd.crd_yaml()
    if args.output:
        for path in args.output:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


# ----------------------------------------------------------------------------- run


def preload_hint(command: list[str], preload: list[str]) -> str | None:
    """A Python trial started fresh imports torch/Lightning each time: say how to avoid it."""
    if preload or not command or not os.path.basename(command[0]).startswith("python"):
        return None
    return (
        "hint: each Python trial imports its libraries anew; `--preload MODULES` (e.g. "
        "lightning.pytorch: seconds of CPU per trial) forks them from one server that "
        "imported them once"
    )


def cmd_run(args: argparse.Namespace) -> int:
    manifest = spec.load_manifest(args.file)
    from rich.console import Console

    console = Console(stderr=True)
    console.print(f"[bold]nasop[/] {manifest.name}: loading Ax ...")
    preload = [m for m in (args.preload or "").split(",") if m]
    hint = preload_hint(list(manifest.spec.trial.command), preload)
    if hint:
        console.print(f"[dim]{hint}[/]")
    quiet_libraries()
    from nasop.local import progress, session

    # Ctrl-C and `kill PID`: cancel the running trials and save. The signal only sets a flag
    # that the loop checks: a KeyboardInterrupt raised at an arbitrary point can be swallowed by
    # library code (TensorBoard's reader has bare excepts). A second signal interrupts at once.
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt(f"signal {signum}")
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    search = session.open_local_search(manifest, args.state_dir, args.state_url, preload)
    console.print(
        f"state: {search.store.describe() if search.store else 'none'}; "
        f"{len(search.experiment.trials)} trials already recorded"
    )
    try:
        with progress.SearchProgress(search, console, quiet=args.quiet) as view:
            while not search.finished:
                if stop.is_set():
                    raise KeyboardInterrupt("stop requested")
                report = search.tick()
                view.update(report)
                stop.wait(args.poll if not report.changed else 0.05)
    except KeyboardInterrupt:
        stopped = search.cancel_running("interrupted by Ctrl-C")
        console.print(
            f"[yellow]interrupted[/]: cancelled trials {stopped}; state saved. "
            f"Run the same command again to resume."
        )
        return 130
    finally:
        search.close()
    status = search.status()
    progress.print_front(status, manifest.spec, console=Console())
    return 0 if status.phase is spec.Phase.SUCCEEDED else 1


# ----------------------------------------------------------------------------- status / report


#: a namespace is a DNS label; a NASExperiment's name a DNS subdomain (as the API server checks)
NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
KUBECTL_PLUGIN = "kubectl-nasop"  # the console script kubectl finds on PATH for `kubectl nasop`
TARGET_HINT = (
    "give a manifest FILE, or NAMESPACE/NAME of a NASExperiment in a cluster (ml/mnist-mlp)"
)


def experiment_ref(target: str, namespace: str | None = None) -> tuple[str, str] | None:
    """(namespace, name) when `target` names a cluster experiment; None for a manifest FILE.

    A file that exists is a file. Otherwise `NAMESPACE/NAME` (valid names, and not ending in
    .yaml/.yml/.json) is a cluster experiment; with `-n NAMESPACE`, as kubectl has it, so is a
    bare NAME (and NAMESPACE/NAME must agree with it).
    """
    if namespace is not None:
        ns, sep, name = target.rpartition("/")
        if sep and ns != namespace:
            raise errors.NasopError(
                f"{target} is in namespace {ns!r}, but -n says {namespace!r}",
                hint=f"drop -n, or write {namespace}/{name}",
            )
        if not NAMESPACE_RE.fullmatch(namespace) or not _valid_name(name):
            raise errors.NasopError(
                f"-n {namespace} {name}: not a namespace and a NASExperiment name",
                hint="names are lowercase letters, digits, '-' (and '.' in a name); "
                "-n applies to a cluster experiment only, not to a manifest FILE",
            )
        return namespace, name
    if os.path.exists(target):
        return None
    ns, sep, name = target.partition("/")
    cluster = sep and NAMESPACE_RE.fullmatch(ns) and _valid_name(name)
    return (ns, name) if cluster and not name.endswith(MANIFEST_SUFFIXES) else None


def _valid_name(name: str) -> bool:
    return len(name) <= 253 and NAME_RE.fullmatch(name) is not None


def _load_search_readonly(args: argparse.Namespace) -> tuple[spec.NASExperiment, Search]:
    """The saved search that `args.file` names: a local one, or one in a cluster."""
    ref = experiment_ref(args.file, args.namespace)
    if ref is not None:
        return _load_cluster_search(args, *ref)
    for option, value in (("--kubeconfig", args.kubeconfig), ("--context", args.context)):
        if value is not None:
            raise errors.NasopError(
                f"{option} applies to a cluster experiment (NAMESPACE/NAME), not to a manifest "
                f"FILE such as {args.file}",
                hint=f"drop {option}, or name the experiment as NAMESPACE/NAME",
            )
    if not os.path.exists(args.file):
        raise errors.NasopError(f"{args.file}: no such file", hint=TARGET_HINT)
    manifest = spec.load_manifest(args.file)
    quiet_libraries()
    from nasop.engine.search import Search
    from nasop.local import session
    from nasop.state.readonly import ReadOnlyStore

    paths = session.LocalPaths(args.state_dir or session.DEFAULT_STATE_DIR)
    store = session.local_store(paths, args.state_url)
    snapshot = store.load(name=manifest.name)
    if snapshot is None:
        raise errors.NasopError(
            f"no state for experiment {manifest.name!r} in {store.describe()}",
            hint=f"run `nasop run {args.file}` first (with the same --state-dir)",
        )
    return manifest, Search.open(
        manifest.spec, manifest.name, session.local_runner(manifest, paths), ReadOnlyStore(snapshot)
    )


def _load_cluster_search(
    args: argparse.Namespace, namespace: str, name: str
) -> tuple[spec.NASExperiment, Search]:
    for option, value in (("--state-dir", args.state_dir), ("--state-url", args.state_url)):
        if value is not None:
            raise errors.NasopError(
                f"{option} applies to a local search (a manifest FILE); {namespace}/{name} is "
                "read from the cluster, where the operator keeps its state",
                hint=f"drop {option}, or give the manifest FILE of a local run",
            )
    from nasop.report import cluster

    ref = cluster.ExperimentRef(namespace, name)
    api = cluster.api_client(args.kubeconfig, args.context)
    try:
        # before Ax is imported, so that these errors answer at once
        manifest = cluster.manifest_of(ref, cluster.read_experiment(api, ref))
        quiet_libraries()
        return cluster.open_search(api, ref, manifest)
    finally:
        api.close()


def cmd_status(args: argparse.Namespace) -> int:
    manifest, search = _load_search_readonly(args)
    status = search.status()
    if args.output == "json":
        print(json.dumps(status.dump(), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump({"status": status.dump()}, sort_keys=False), end="")
    else:
        from rich.console import Console

        from nasop.local import progress

        console = Console()
        progress.print_front(status, manifest.spec, console=console)
        progress.print_trials(search, console, now=time.time())
    search.close()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    _manifest, search = _load_search_readonly(args)
    from nasop import report

    report.write_report(search, args.output)
    print(f"wrote {args.output}")
    search.close()
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    from nasop.controller import main as controller_main

    return controller_main.run(args)


# ----------------------------------------------------------------------------- parser


def build_parser(prog: str = "nasop") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Multi-objective neural architecture search (Ax + TorchX)."
    )
    p.add_argument("--version", action="version", version=f"nasop {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    _add_run(sub)

    sp = sub.add_parser(
        "status", help="print the status block of a search (local, or NAMESPACE/NAME in a cluster)"
    )
    _target_args(sp)
    sp.add_argument("-o", "--output", choices=["json", "yaml", "table"], default="table")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser(
        "report", help="write a self-contained HTML report (local, or NAMESPACE/NAME in a cluster)"
    )
    _target_args(sp)
    sp.add_argument("-o", "--output", default="report.html")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("validate", help="check manifests offline")
    sp.add_argument("files", nargs="+")
    sp.set_defaults(func=cmd_validate)

    sp = sub.add_parser("crd", help="print the generated CustomResourceDefinition")
    sp.add_argument("-o", "--output", action="append", help="write to this file (repeatable)")
    sp.set_defaults(func=cmd_crd)
    _add_operator(sub)
    return p


def _target_args(sp: argparse.ArgumentParser) -> None:
    """A manifest FILE with its local state, or a cluster experiment and how to reach it."""
    sp.add_argument(
        "file",
        metavar="FILE|NAMESPACE/NAME",
        help="the manifest of a local search, or a NASExperiment in the cluster (ml/mnist-mlp)",
    )
    _state_args(sp)
    cluster = sp.add_argument_group(
        "a cluster experiment (read-only: `get` on nasexperiments and configmaps)"
    )
    cluster.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="the experiment's namespace (then give its NAME alone, as with kubectl)",
    )
    cluster.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
    )
    cluster.add_argument("--context", default=None, help="kubeconfig context (default: current)")


def _state_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--state-dir",
        default=None,
        help="where state, logs and trial output live (default: ./.nasop)",
    )
    sp.add_argument(
        "--state-url",
        default=None,
        help="keep the Ax state in a database instead, e.g. sqlite:///nasop.db",
    )


def _add_run(sub: Any) -> None:
    sp = sub.add_parser("run", help="run (or resume) a search on this machine")
    sp.add_argument("file")
    _state_args(sp)
    sp.add_argument("--poll", type=float, default=0.5, help="seconds between ticks")
    sp.add_argument("--quiet", action="store_true", help="no live progress display")
    sp.add_argument(
        "--preload",
        default="",
        metavar="MODULES",
        help="comma-separated modules (e.g. lightning.pytorch) that a fork server "
        "imports once; `python -m`/`python FILE` trials are forked from it "
        "instead of importing them again",
    )
    sp.set_defaults(func=cmd_run)


def _add_operator(sub: Any) -> None:
    sp = sub.add_parser("operator", help="run the Kubernetes operator")
    sp.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        help="watch this namespace (repeatable; default: WATCH_NAMESPACES or all)",
    )
    sp.add_argument("--liveness-port", type=int, default=8080)
    sp.add_argument("--metrics-port", type=int, default=9090)
    sp.add_argument(
        "--log-root",
        default=None,
        help="where the shared trial log volume is mounted (default: /logs)",
    )
    sp.set_defaults(func=cmd_operator)


def main(argv: list[str] | None = None) -> int:
    """`nasop`, and `kubectl-nasop` (kubectl runs it for `kubectl nasop ...`)."""
    plugin = argv is None and os.path.basename(sys.argv[0]).startswith(KUBECTL_PLUGIN)
    args = build_parser("kubectl nasop" if plugin else "nasop").parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except errors.NasopError as e:
        _print_err(e)
        return 2


if __name__ == "__main__":
    sys.exit(main())

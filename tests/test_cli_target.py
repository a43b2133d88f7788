"""`nasop status|report FILE|NAMESPACE/NAME`: which argument is a manifest and which a cluster
experiment, the options that belong to one or the other, the errors before any API call (no
kubeconfig, a bad one, a server out of reach), and the `kubectl-nasop` entry point.

What a real API server answers (not found, no state yet, forbidden, bad credentials) is in
tests/engine/test_report_cluster.py.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest
import tomllib
import yaml

from nasop import cli, errors

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture()
def elsewhere(tmp_path, monkeypatch):
    """A working directory with one manifest in a folder, and no kubeconfig anywhere."""
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "quick").write_text("kind: NASExperiment\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("target", "namespace", "ref"),
    [
        ("ml/mnist-mlp", None, ("ml", "mnist-mlp")),
        ("ml/mnist.v2", None, ("ml", "mnist.v2")),  # a name may hold dots
        ("examples/quick", None, None),  # the file exists: a file, though it reads as ns/name
        ("examples/quick.yaml", None, None),  # no such file, but named as a manifest
        ("ml/Mnist", None, None),  # not a valid name: a (missing) file
        ("a/b/c", None, None),
        ("mnist-mlp", None, None),  # a bare name is a file unless -n says otherwise
        ("mnist-mlp", "ml", ("ml", "mnist-mlp")),  # kubectl's spelling
        ("ml/mnist-mlp", "ml", ("ml", "mnist-mlp")),
    ],
)
def test_a_target_is_a_file_or_a_cluster_experiment(elsewhere, target, namespace, ref):
    assert cli.experiment_ref(target, namespace) == ref


def test_namespace_option_and_target_must_agree(elsewhere):
    with pytest.raises(errors.NasopError, match="in namespace 'ml', but -n says 'prod'") as e:
        cli.experiment_ref("ml/mnist", "prod")
    assert "prod/mnist" in e.value.hint
    with pytest.raises(errors.NasopError, match="not a namespace and a NASExperiment name"):
        cli.experiment_ref("Mnist_MLP", "ml")


def _main(capsys, *argv):
    rc = cli.main(list(argv))
    return rc, capsys.readouterr().err


def test_a_missing_file_says_both_spellings(elsewhere, capsys):
    rc, err = _main(capsys, "report", "examples/quick.yaml", "-o", "r.html")
    assert rc == 2
    assert "error: examples/quick.yaml: no such file" in err
    assert "NAMESPACE/NAME of a NASExperiment in a cluster" in err


@pytest.mark.parametrize("option", ["--kubeconfig", "--context"])
def test_cluster_options_refuse_a_manifest_file(elsewhere, capsys, option):
    rc, err = _main(capsys, "status", "examples/quick", option, "x")
    assert rc == 2
    assert f"{option} applies to a cluster experiment (NAMESPACE/NAME)" in err


@pytest.mark.parametrize("option", ["--state-dir", "--state-url"])
def test_local_options_refuse_a_cluster_experiment(elsewhere, capsys, option):
    rc, err = _main(capsys, "status", "ml/mnist", option, "x")
    assert rc == 2
    assert f"{option} applies to a local search" in err and "ml/mnist" in err


def test_no_kubeconfig_anywhere_says_where_it_looked(elsewhere, capsys):
    rc, err = _main(capsys, "status", "ml/mnist")
    assert rc == 2
    assert "no kubeconfig: $KUBECONFIG is unset, ~/.kube/config does not exist" in err
    assert "--kubeconfig FILE" in err
    rc, err = _main(capsys, "status", "ml/mnist", "--kubeconfig", "nope.yaml")
    assert "--kubeconfig nope.yaml: no such file" in err


def _kubeconfig(path, server, context="test"):
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": context,
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return path


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is


def test_an_unknown_context_and_an_unreachable_server(elsewhere, capsys, monkeypatch):
    server = f"http://127.0.0.1:{_closed_port()}"
    path = _kubeconfig(elsewhere / "kc", server)
    rc, err = _main(capsys, "status", "ml/mnist", "--kubeconfig", str(path), "--context", "prod")
    assert rc == 2 and f"cannot use the --kubeconfig {path}" in err and "prod" in err
    assert "kubectl config get-contexts" in err
    # $KUBECONFIG as kubectl reads it: a list of files, merged (the first one missing here)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(elsewhere / "missing"), str(path)]))
    rc, err = _main(capsys, "report", "ml/mnist", "-o", "r.html")
    assert rc == 2
    assert f"error: cannot reach the Kubernetes API server at {server}" in err
    assert "kubectl config current-context" in err
    assert not (elsewhere / "r.html").exists()


# ----------------------------------------------------------------------------- kubectl nasop


def _plugin_script(folder: pathlib.Path) -> pathlib.Path:
    """`kubectl-nasop` as pip installs it from pyproject.toml's [project.scripts] entry."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-nasop"] == scripts["nasop"] == "nasop.cli:main"
    module, func = scripts["kubectl-nasop"].split(":")
    script = folder / "kubectl-nasop"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"
    )
    script.chmod(0o755)
    return script


def test_kubectl_nasop_is_the_same_cli_under_kubectls_name(tmp_path):
    script = _plugin_script(tmp_path)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    run = [str(script), "report", "--help"]
    if shutil.which("kubectl"):  # kubectl finds plugins on PATH by the kubectl- prefix
        run = ["kubectl", "nasop", "report", "--help"]
    out = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: kubectl nasop report")
    assert "FILE|NAMESPACE/NAME" in out.stdout and "--kubeconfig" in out.stdout


def test_in_a_pod_the_service_account_is_used(elsewhere, monkeypatch):
    """No kubeconfig, but KUBERNETES_SERVICE_HOST: the pod's token and CA, as kubectl in a pod."""
    import kubernetes.config.incluster_config as incluster

    from nasop.report import cluster

    (elsewhere / "token").write_text("pod-token")
    (elsewhere / "ca.crt").write_text("not checked until a request")
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(elsewhere / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(elsewhere / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api = cluster.api_client()
    assert api.configuration.host == "https://10.0.0.1:443"
    assert api.configuration.api_key["BearerToken"].endswith("pod-token")
    with pytest.raises(errors.NasopError, match="--context prod: there is no kubeconfig here"):
        cluster.api_client(context="prod")

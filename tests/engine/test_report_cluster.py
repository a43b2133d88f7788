"""What `nasop status|report NAMESPACE/NAME` says when the real API server refuses: an experiment
that does not exist, a CRD that is not installed, a spec nasop refuses, an experiment the
operator has not saved state for yet, a user RBAC does not allow (and the Role the hint names is
enough), credentials the server does not accept; and `kubectl nasop` against the same server.

The search itself, run by the operator and then reported, is
tests/operator/test_cluster_report.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time

import controlplane
import pytest
import yaml

from nasop import cli, spec
from stubs import manifest

pytestmark = pytest.mark.cluster

EXP = "nasop.dev/v1alpha1/nasexperiments"
READER = "nasop-test-reader"  # a ServiceAccount with no grant but what a test gives it


@pytest.fixture()
def admin(cluster, tmp_path):
    path = tmp_path / "admin.kubeconfig"
    path.write_text(yaml.safe_dump(cluster.plane.admin_kubeconfig()))
    return path


def _nasop(capsys, *argv):
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.err


def test_a_missing_experiment_and_a_missing_crd(cluster, admin, capsys, monkeypatch):
    rc, err = _nasop(capsys, "status", "default/nope", "--kubeconfig", str(admin))
    assert rc == 2
    assert "error: NASExperiment default/nope not found" in err
    assert "`kubectl get nasx -n default` lists the experiments there" in err
    # a server without the CRD: ask for a plural it does not serve (the answer is the server's)
    monkeypatch.setattr(spec, "PLURAL", "nasexperimentz")
    rc, err = _nasop(capsys, "report", "default/nope", "--kubeconfig", str(admin))
    assert rc == 2
    assert (
        "does not know NASExperiments (nasexperimentz.nasop.dev): the CRD is not installed" in err
    )
    assert "kubectl apply -f crds/" in err


def test_no_state_yet_says_the_operator_has_not_saved_it(cluster, admin, capsys):
    cluster.create_object(EXP, {**manifest("fresh"), "metadata": {"name": "fresh"}}, "default")
    rc, err = _nasop(capsys, "status", "-n", "default", "fresh", "--kubeconfig", str(admin))
    assert rc == 2
    assert "error: the operator has not saved state for default/fresh yet" in err
    assert "no ConfigMap fresh-nasop-state in namespace default" in err
    assert "is the operator running and watching namespace default?" in err


def test_an_invalid_spec_names_the_field(cluster, admin, capsys):
    bad = {**manifest("bad"), "metadata": {"name": "bad"}}
    bad["spec"]["searchSpace"][0]["bounds"] = [128, 16]  # the CRD allows it, nasop does not
    cluster.create_object(EXP, bad, "default")
    rc, err = _nasop(capsys, "report", "default/bad", "--kubeconfig", str(admin))
    assert rc == 2
    assert "error: NASExperiment default/bad is invalid" in err
    assert "spec.searchSpace[0]" in err and "reversed" in err
    assert "kubectl edit nasx bad -n default" in err


def _reader_kubeconfig(cluster, tmp_path):
    plane = cluster.plane
    plane.request(
        "POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": READER}}
    )
    token = plane.request(
        "POST",
        f"/api/v1/namespaces/default/serviceaccounts/{READER}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]
    path = tmp_path / "reader.kubeconfig"
    path.write_text(
        yaml.safe_dump(controlplane.kubeconfig(plane.url, token, plane.ca_file, user=READER))
    )
    return path


def _grant(cluster, rules):
    """Give the reader a Role with `rules` (replacing the one it had) and bind it."""
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/default"
    with contextlib.suppress(controlplane.ApiError):
        cluster.plane.request("DELETE", f"{rbac}/roles/{READER}")
    cluster.plane.request("POST", f"{rbac}/roles", {"metadata": {"name": READER}, "rules": rules})
    with contextlib.suppress(controlplane.ApiError):  # 409: bound already
        cluster.plane.request(
            "POST",
            f"{rbac}/rolebindings",
            {
                "metadata": {"name": READER},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": READER,
                },
                "subjects": [{"kind": "ServiceAccount", "name": READER, "namespace": "default"}],
            },
        )


def _until(capsys, argv, wanted, timeout=20.0):
    """The CLI's stderr once it says `wanted` (RBAC changes reach the authorizer in a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        rc, err = _nasop(capsys, *argv)
        if wanted in err or time.monotonic() > deadline:
            return rc, err
        time.sleep(0.2)


def test_forbidden_names_the_verb_and_resource_and_the_hinted_role_is_enough(
    cluster, tmp_path, capsys
):
    cluster.create_object(EXP, {**manifest("guarded"), "metadata": {"name": "guarded"}}, "default")
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/default"
    try:
        reader = _reader_kubeconfig(cluster, tmp_path)
        argv = ["status", "default/guarded", "--kubeconfig", str(reader)]
        rc, err = _nasop(capsys, *argv)
        assert rc == 2
        assert (
            "error: forbidden: reading default/guarded needs `get` on nasexperiments.nasop.dev "
            "in namespace default" in err
        )
        hint = "--verb=get --resource=nasexperiments.nasop.dev,configmaps"
        assert f"kubectl create role nasop-reader -n default {hint}" in err
        _grant(
            cluster,
            [{"apiGroups": ["nasop.dev"], "resources": ["nasexperiments"], "verbs": ["get"]}],
        )
        rc, err = _until(capsys, argv, "needs `get` on configmaps")
        assert rc == 2 and "forbidden: reading default/guarded needs `get` on configmaps" in err
        _grant(
            cluster,
            [
                {"apiGroups": ["nasop.dev"], "resources": ["nasexperiments"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
            ],
        )  # the hint's Role: now only the missing state stands in the way
        rc, err = _until(capsys, argv, "has not saved state")
        assert rc == 2 and "the operator has not saved state for default/guarded yet" in err, err
    finally:
        for path in (
            f"{rbac}/rolebindings/{READER}",
            f"{rbac}/roles/{READER}",
            f"/api/v1/namespaces/default/serviceaccounts/{READER}",
        ):
            with contextlib.suppress(controlplane.ApiError):
                cluster.plane.request("DELETE", path)


def test_credentials_the_server_refuses(cluster, tmp_path, capsys):
    plane = cluster.plane
    path = tmp_path / "stale.kubeconfig"
    path.write_text(yaml.safe_dump(controlplane.kubeconfig(plane.url, "expired", plane.ca_file)))
    rc, err = _nasop(capsys, "report", "default/any", "--kubeconfig", str(path))
    assert rc == 2
    assert f"the API server at {plane.url} did not accept the kubeconfig's credentials" in err
    assert "log in again" in err


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_nasop_reads_the_cluster(cluster, admin, tmp_path):
    """`kubectl nasop` (the kubectl-nasop console script on PATH) with $KUBECONFIG, as kubectl
    itself would read it."""
    plugin = tmp_path / "kubectl-nasop"
    plugin.write_text(
        f"#!{sys.executable}\nimport sys\nfrom nasop.cli import main\nsys.exit(main())\n"
    )
    plugin.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    env["KUBECONFIG"] = str(admin)
    out = subprocess.run(
        ["kubectl", "nasop", "status", "default/nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2, out
    assert "error: NASExperiment default/nope not found" in out.stderr

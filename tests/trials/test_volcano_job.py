"""The Volcano job nasop submits, as TorchX's dry run renders it (no cluster needed)."""

from __future__ import annotations

from torchx import specs

from nasop.trials.volcano import VolcanoScheduler


def test_every_task_must_succeed_without_relying_on_volcanos_webhook() -> None:
    app = specs.AppDef(
        "trial",
        roles=[
            specs.Role(
                "trainer",
                image="nasop-trainer:0.1.0",
                entrypoint="python",
                args=["-m", "nasop_trainer"],
                resource=specs.Resource(cpu=1, gpu=0, memMB=1024),
            )
        ],
        metadata={"nasop.dev/experiment": "e", "nasop.dev/trial": "3"},
    )
    scheduler = VolcanoScheduler(
        "nasop",
        client=object(),
        owner={"kind": "NASExperiment"},
        labels={"app.kubernetes.io/managed-by": "nasop"},
    )
    job = scheduler.submit_dryrun(app, {"queue": "default", "namespace": "ns"}).request.resource
    assert job["spec"]["minAvailable"] == 1  # TorchX leaves 0: a failed pod would read Completed
    assert job["metadata"]["labels"]["nasop.dev/trial"] == "3"
    assert job["metadata"]["ownerReferences"] == [{"kind": "NASExperiment"}]
    pod_labels = job["spec"]["tasks"][0]["template"].metadata.labels
    assert pod_labels["nasop.dev/experiment"] == "e"

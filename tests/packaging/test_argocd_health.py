"""docs/argocd-health.lua, run by a real Lua interpreter (lupa) on statuses that nasop's own
status code writes: Healthy / Progressing / Degraded / Suspended as Argo CD would show them.

The snippet to paste into argocd-cm (docs/install.md) must hold the same Lua as the file.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import pytest
import yaml
from chart_helpers import REPO_ROOT

from nasop import spec
from nasop.controller import status_writer
from nasop.engine import conditions

lupa = pytest.importorskip("lupa", reason="lupa (the dev extra) runs the Lua health check")

LUA = REPO_ROOT / "docs" / "argocd-health.lua"
DOC = REPO_ROOT / "docs" / "install.md"
KEY = "resource.customizations.health.nasop.dev_NASExperiment"


def _health(obj: dict[str, Any], script: str | None = None) -> dict[str, str]:
    """Run the health check as Argo CD does: `obj` is a global table, the script returns `hs`."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script or LUA.read_text())
    return {k: str(v) for k, v in dict(hs).items()}


def _written(*phases: tuple[Any, ...], generation: int = 1) -> dict[str, Any]:
    """The resource after the operator's StatusWriter wrote one status per (phase, running,
    message[, waiting]) in turn, the last for `generation`; `waiting` is what
    conditions.from_phase takes about waiting trials (pending, waiting, stalled)."""
    writer = status_writer.StatusWriter(None, "default", "exp", None)

    class _Api:
        def patch_namespaced_custom_object_status(self, *args: Any) -> None:
            pass

    writer.api = _Api()
    for phase, running, message, *more in phases:
        waiting = more[0] if more else {}
        pending = waiting.get("pending", 0)
        st = spec.NASExperimentStatus(
            phase=phase,
            message=message or None,
            trials=spec.TrialCounts(running=running - pending, pending=pending),
            conditions=conditions.from_phase(
                phase, message, running=running, since=spec.now_rfc3339(), **waiting
            ),
        ).dump()
        st["observedGeneration"] = generation
        writer.write(st)
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "metadata": {"name": "exp", "generation": generation},
        "status": writer.last,
    }


RUNNING = (spec.Phase.RUNNING, 2, "")
CLAIM = 'Unschedulable: 0/1 nodes are available: persistentvolumeclaim "nasop-logs" not found'
#: two trials launched, neither runs: waiting (progress expected), then stalled
WAITING = (spec.Phase.RUNNING, 2, "", {"pending": 2, "waiting": CLAIM})
STALLED = (
    spec.Phase.RUNNING,
    2,
    "",
    {"pending": 2, "waiting": CLAIM, "stalled": f"no trial has started for more than 5m; {CLAIM}"},
)


@pytest.mark.parametrize(
    "obj, status, message",
    [
        (_written(RUNNING), "Progressing", "2 trials running"),
        (_written(WAITING), "Progressing", "0 trials running, 2 waiting: Unschedulable"),
        (_written(WAITING, STALLED), "Degraded", "TrialsCannotStart: no trial has started"),
        (_written(WAITING, STALLED, RUNNING), "Progressing", "2 trials running"),
        (
            _written(RUNNING, (spec.Phase.SUCCEEDED, 0, "all 4 trials done")),
            "Healthy",
            "Succeeded: all 4 trials done",
        ),
        (
            _written(
                RUNNING, (spec.Phase.FAILED, 0, "3 trials failed, more than maxFailedTrials=2")
            ),
            "Degraded",
            "Failed: 3 trials failed",
        ),
        (
            _written(
                RUNNING,
                (spec.Phase.SUSPENDED, 1, "spec.suspend is true: no new launches"),
                generation=2,
            ),
            "Suspended",
            "Suspended: spec.suspend is true",
        ),
        (
            _written(RUNNING, (spec.Phase.SUSPENDED, 0, "spec.suspend is true"), generation=2),
            "Suspended",
            "Suspended",
        ),
    ],
)
def test_health_of_statuses_the_operator_writes(obj, status, message):
    hs = _health(obj)
    assert hs["status"] == status, hs
    assert message in hs["message"], hs


def test_an_invalid_manifest_is_degraded_with_the_field_named():
    obj = {
        "metadata": {"name": "bad", "generation": 1},
        "status": status_writer.invalid("spec.searchSpace[0].bounds: reversed", 1),
    }
    hs = _health(obj)
    assert hs == {"status": "Degraded", "message": "Invalid: spec.searchSpace[0].bounds: reversed"}


def test_a_status_for_an_older_generation_is_progressing():
    obj = _written(RUNNING, (spec.Phase.SUCCEEDED, 0, "done"))
    assert _health(obj)["status"] == "Healthy"
    obj["metadata"]["generation"] = 2  # e.g. budget.maxTrials raised, not yet seen
    hs = _health(obj)
    assert hs["status"] == "Progressing" and "generation 2" in hs["message"]


def test_no_status_yet_is_progressing():
    assert _health({"metadata": {"name": "new", "generation": 1}})["status"] == "Progressing"


def test_the_argocd_cm_snippet_in_the_guide_is_the_lua_file():
    blocks = re.findall(
        r"^```yaml\n(# save as argocd-cm-nasop\.yaml\n.*?)^```",
        DOC.read_text(),
        flags=re.MULTILINE | re.DOTALL,
    )
    assert len(blocks) == 1
    cm = yaml.safe_load(blocks[0])
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"][KEY] == LUA.read_text()
    # and what Argo CD loads from the ConfigMap behaves as the file does
    obj = _written(RUNNING, (spec.Phase.FAILED, 0, "broken"))
    assert _health(obj, textwrap.dedent(cm["data"][KEY]))["status"] == "Degraded"


def test_flux_blocks_in_the_guide_wait_on_experiments():
    blocks = re.findall(
        r"^```yaml\n(# save as flux-experiments\.yaml\n.*?)^```",
        DOC.read_text(),
        flags=re.MULTILINE | re.DOTALL,
    )
    docs = list(yaml.safe_load_all(blocks[0]))
    assert any(d["spec"].get("wait") is True for d in docs)
    checks = [c for d in docs for c in d["spec"].get("healthChecks", [])]
    assert checks and all(
        c["apiVersion"] == spec.API_VERSION and c["kind"] == spec.KIND for c in checks
    )


def test_a_condition_without_reason_or_message_still_reads():
    obj = {
        "metadata": {"name": "x", "generation": 1},
        "status": {"observedGeneration": 1, "conditions": [{"type": "Stalled", "status": "True"}]},
    }
    assert _health(obj) == {"status": "Degraded", "message": "Stalled"}

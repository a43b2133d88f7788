"""The chart's RBAC grants exactly the API calls the operator makes.

`required_api_calls.yaml` lists the calls as (group, resource, verbs) with a scope. The chart keeps
its rules in one place (`templates/_rbac.tpl`). These tests render both RBAC modes and check, in
both directions, that every call is granted and that nothing else is.

`rules_cover` and `rules_beyond` are plain functions so that other tests (e.g. one that records
the calls the operator tests make against the API emulator) can reuse them.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterable
from typing import Any

import pytest
import yaml
from chart_helpers import CHART_DIR, NAMESPACE, Manifest, of_kind, one, parse_manifests

#: (apiGroup, resource, verb); the core group is "".
Call = tuple[str, str, str]

REQUIRED_FILE = pathlib.Path(__file__).with_name("required_api_calls.yaml")
SCOPES = ("namespaced", "cluster")
SCHEDULERS = ("volcano", "job")  # spec.trial.scheduler, the chart's rbac.trialSchedulers
DEFAULT_SCHEDULERS = ("volcano",)  # values.yaml


def load_required(
    scopes: Iterable[str] = SCOPES,
    path: pathlib.Path = REQUIRED_FILE,
    schedulers: Iterable[str] = SCHEDULERS,
) -> list[Call]:
    """The calls of the given scopes (and trial schedulers) from `required_api_calls.yaml`, one
    tuple per verb."""
    wanted, used = set(scopes), set(schedulers)
    calls: list[Call] = []
    for entry in yaml.safe_load(path.read_text())["calls"]:
        if entry["scope"] in wanted and (used & set(entry.get("schedulers") or SCHEDULERS)):
            calls += [(entry["group"], entry["resource"], verb) for verb in entry["verbs"]]
    return calls


def _rule_matches(rule: dict[str, Any], call: Call) -> bool:
    """Whether one PolicyRule allows a call on any object of the resource (wildcards honoured)."""
    group, resource, verb = call
    if rule.get("resourceNames"):  # limited to named objects: no list/watch/create of any object
        return False
    groups, resources, verbs = (rule.get(k) or [] for k in ("apiGroups", "resources", "verbs"))
    return (
        (group in groups or "*" in groups)
        and (resource in resources or "*" in resources)
        and (verb in verbs or "*" in verbs)
    )


def rules_cover(rendered_rules: list[dict[str, Any]], required: Iterable[Call]) -> list[Call]:
    """The required calls that no rule grants (empty when the rules cover them all).

    Args:
        rendered_rules: the `rules` of a rendered Role or ClusterRole (PolicyRule dicts).
        required: (group, resource, verb) tuples; the core group is "".

    Returns:
        The missing calls, in the order given.
    """
    return [
        call for call in required if not any(_rule_matches(rule, call) for rule in rendered_rules)
    ]


def granted(rendered_rules: list[dict[str, Any]]) -> list[Call]:
    """Every (group, resource, verb) the rules name literally; wildcards stay as "*"."""
    calls: list[Call] = []
    for rule in rendered_rules:
        resources = list(rule.get("resources") or []) + [
            f"nonResourceURL:{url}" for url in rule.get("nonResourceURLs") or []
        ]
        for group in rule.get("apiGroups") or [""]:
            for resource in resources:
                for verb in rule.get("verbs") or []:
                    calls.append((group, resource, verb))
    return calls


def rules_beyond(rendered_rules: list[dict[str, Any]], allowed: Iterable[Call]) -> list[Call]:
    """The grants outside `allowed` (a wildcard is always outside, unless allowed literally)."""
    allowed_set = set(allowed)
    return sorted({call for call in granted(rendered_rules) if call not in allowed_set})


# ---------------------------------------------------------------- the list itself


def test_required_file_is_well_formed() -> None:
    entries = yaml.safe_load(REQUIRED_FILE.read_text())["calls"]
    assert entries
    seen = set()
    for entry in entries:
        assert (
            {"group", "resource", "verbs", "scope"}
            <= set(entry)
            <= {"group", "resource", "verbs", "scope", "unrecorded", "schedulers"}
        ), entry
        assert set(entry.get("schedulers") or SCHEDULERS) <= set(SCHEDULERS), entry
        assert set(entry.get("unrecorded") or {}) <= set(entry["verbs"]), entry
        assert all(str(why).strip() for why in (entry.get("unrecorded") or {}).values()), entry
        assert entry["scope"] in SCOPES, entry
        assert entry["verbs"] and len(set(entry["verbs"])) == len(entry["verbs"]), entry
        assert "*" not in entry["verbs"] and entry["resource"] != "*", entry
        key = (entry["group"], entry["resource"])
        assert key not in seen, f"{key} listed twice"
        seen.add(key)


# ---------------------------------------------------------------- derived from the tests

RECORDED_FILE = REQUIRED_FILE.with_name("recorded_api_calls.yaml")
OPERATOR_TESTS = REQUIRED_FILE.parents[1] / "operator"


def _rbac_scopes(decorators: Iterable[ast.expr]) -> list[str] | None:
    """The arguments of a `pytest.mark.rbac_scopes(...)` among decorators or `pytestmark` items
    (`*RBAC_BOTH` read as both scopes); None when there is none."""
    for node in decorators:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "rbac_scopes"
        ):
            scopes: list[str] = []
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    assert isinstance(arg.value, ast.Name) and arg.value.id == "RBAC_BOTH", arg
                    scopes += list(SCOPES)
                else:
                    scopes.append(ast.literal_eval(arg))
            return scopes
    return None


def _scenario_names() -> set[str]:
    """The operator tests that record their API calls (modules using `record_api_calls`), one
    name per RBAC scope each runs in (tests/operator/conftest.py's `rbac_scopes` marker)."""
    names: set[str] = set()
    for path in OPERATOR_TESTS.glob("test_*.py"):
        text = path.read_text()
        if '"record_api_calls"' not in text:
            continue
        tree = ast.parse(text)
        module_scopes: list[str] | None = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            ):
                items = node.value.elts if isinstance(node.value, ast.List) else [node.value]
                module_scopes = _rbac_scopes(items)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                scopes = _rbac_scopes(node.decorator_list) or module_scopes
                names |= {f"{node.name}[{s}]" for s in scopes} if scopes else {node.name}
    return names


def _recorded_calls(scenarios: dict[str, Any], scope: str) -> set[Call]:
    return {
        (c["group"], c["resource"], v)
        for name, calls in scenarios.items()
        if name.endswith(f"[{scope}]")
        for c in calls
        for v in c["verbs"]
    }


def test_cluster_mode_scenarios_make_every_call_the_namespaced_ones_make() -> None:
    """Most scenarios run namespaced only (a minute each); the few marked
    `rbac_scopes(*RBAC_BOTH)` must still prove every call under the chart's ClusterRole too."""
    scenarios = yaml.safe_load(RECORDED_FILE.read_text())["scenarios"]
    missing = _recorded_calls(scenarios, "namespaced") - _recorded_calls(scenarios, "cluster")
    assert not missing, (
        f"calls made only by namespaced-only scenarios: {sorted(missing)}; mark one scenario "
        "that makes them @pytest.mark.rbac_scopes(*RBAC_BOTH)"
    )


def test_required_calls_are_the_recorded_union_plus_justified_extras() -> None:
    """required_api_calls.yaml == the union of what the operator scenarios recorded, plus the
    `unrecorded` verbs (each with the code path that needs it), and nothing else."""
    scenarios = yaml.safe_load(RECORDED_FILE.read_text())["scenarios"]
    assert set(scenarios) == _scenario_names(), "re-run tests/operator to refresh the record"
    recorded = {
        (c["group"], c["resource"], v)
        for calls in scenarios.values()
        for c in calls
        for v in c["verbs"]
    }
    entries = yaml.safe_load(REQUIRED_FILE.read_text())["calls"]
    justified = {(e["group"], e["resource"], v) for e in entries for v in e.get("unrecorded") or {}}
    assert not justified & recorded, f"recorded now, drop from `unrecorded`: {justified & recorded}"
    assert set(load_required()) == recorded | justified, (
        f"granted but never made: {sorted(set(load_required()) - recorded - justified)}; "
        f"made but not granted: {sorted(recorded - set(load_required()))}"
    )


# ---------------------------------------------------------------- the helpers


def test_rules_cover_helpers() -> None:
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["one"]},
    ]
    required = [
        ("", "pods", "get"),
        ("", "pods", "watch"),
        ("apps", "deployments", "get"),
        ("", "secrets", "get"),
    ]
    assert rules_cover(rules, required) == [("", "pods", "watch"), ("", "secrets", "get")]
    assert rules_beyond(rules, [("", "pods", "get"), ("", "pods", "list")]) == [
        ("", "secrets", "get"),
        ("apps", "*", "get"),
    ]


# ---------------------------------------------------------------- rbac.scope=cluster


def _bound_subjects(binding: Manifest) -> list[tuple[str, str, str]]:
    return [(s["kind"], s["name"], s["namespace"]) for s in binding["subjects"]]


def test_cluster_scope_grants_exactly_the_required_calls(
    manifests: dict[str, list[Manifest]],
) -> None:
    objects = manifests["default"]
    assert not of_kind(objects, "Role") and not of_kind(objects, "RoleBinding")
    role = one(objects, "ClusterRole")
    required = load_required(SCOPES, schedulers=DEFAULT_SCHEDULERS)
    assert rules_cover(role["rules"], required) == []
    assert rules_beyond(role["rules"], required) == []
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert _bound_subjects(binding) == [("ServiceAccount", account, NAMESPACE)]


def test_cluster_scope_with_watched_namespaces_still_uses_a_cluster_role(render: Any) -> None:
    objects = parse_manifests(render({"watchNamespaces": ["ml"]}))
    role = one(objects, "ClusterRole")
    assert rules_cover(role["rules"], load_required(SCOPES, schedulers=DEFAULT_SCHEDULERS)) == []


# ---------------------------------------------------------------- rbac.scope=namespaced


def test_namespaced_scope_grants_a_role_per_watched_namespace(
    manifests: dict[str, list[Manifest]],
) -> None:
    objects = manifests["namespaced"]
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    required = load_required(["namespaced"], schedulers=DEFAULT_SCHEDULERS)
    roles = {r["metadata"]["namespace"]: r for r in of_kind(objects, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(objects, "RoleBinding")}
    assert set(roles) == set(bindings) == {"ml-team-a", "ml-team-b"}
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    for namespace, role in roles.items():
        assert rules_cover(role["rules"], required) == [], namespace
        assert rules_beyond(role["rules"], required) == [], namespace
        binding = bindings[namespace]
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        # the ServiceAccount lives in the release namespace, the grant in the watched one
        assert _bound_subjects(binding) == [("ServiceAccount", account, NAMESPACE)]


def test_rbac_can_be_left_to_the_cluster_admin(render: Any) -> None:
    objects = parse_manifests(
        render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "nasop-sa"}})
    )
    kinds = {o["kind"] for o in objects}
    assert not kinds & {
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
    }
    dep = one(objects, "Deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "nasop-sa"


# ---------------------------------------------------------------- one place


def test_rules_are_defined_in_one_place() -> None:
    holders = sorted(
        p.relative_to(CHART_DIR).as_posix()
        for p in (CHART_DIR / "templates").rglob("*")
        if p.is_file() and "apiGroups:" in p.read_text()
    )
    assert holders == ["templates/_rbac.tpl"]


@pytest.mark.parametrize("schedulers", [["volcano"], ["job"], ["volcano", "job"]])
@pytest.mark.parametrize("scope", SCOPES)
def test_rbac_helper_and_required_file_agree(
    render: Any, scope: str, schedulers: list[str]
) -> None:
    """Both files change together: the rendered rule list matches the required list entry by
    entry, for each choice of trial schedulers (jobs.batch only when `job` is chosen)."""
    values = {
        "rbac": {"scope": scope, "trialSchedulers": schedulers},
        "watchNamespaces": ["ml"] if scope == "namespaced" else [],
    }
    objects = parse_manifests(render(values))
    role = one(objects, "ClusterRole" if scope == "cluster" else "Role")
    wanted_scopes = SCOPES if scope == "cluster" else ["namespaced"]
    assert sorted(granted(role["rules"])) == sorted(
        load_required(wanted_scopes, schedulers=schedulers)
    )
    assert (("batch", "jobs", "create") in granted(role["rules"])) == ("job" in schedulers)


def test_no_trial_scheduler_is_refused(render: Any) -> None:
    with pytest.raises(Exception, match="trialSchedulers"):
        render({"rbac": {"trialSchedulers": []}})

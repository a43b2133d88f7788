"""Chart paths, values variants and manifest helpers shared by the packaging tests.

Kept out of conftest.py so that test modules can import it (`import chart_helpers`); pytest's
default import mode puts this folder on sys.path. This folder must not get an `__init__.py`:
it would become a package named `packaging` and shadow the library of that name.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "nasop"
RELEASE = "nasop"
NAMESPACE = "nasop-system"

#: Values variants rendered by the tests: the defaults and each chart-testing file in ci/.
VARIANTS: dict[str, pathlib.Path | None] = {
    "default": None,
    "namespaced": CHART_DIR / "ci" / "namespaced-values.yaml",
    "existing-claim": CHART_DIR / "ci" / "existing-claim-values.yaml",
    "monitoring": CHART_DIR / "ci" / "monitoring-values.yaml",
}

Manifest = dict[str, Any]


def variant_values(variant: str) -> dict[str, Any]:
    """The user-supplied values of a variant (empty for the defaults)."""
    path = VARIANTS[variant]
    return {} if path is None else yaml.safe_load(path.read_text()) or {}


def parse_manifests(rendered: dict[str, str]) -> list[Manifest]:
    """Split `Chart.render` output into objects, skipping NOTES.txt and empty documents.

    Each object gets the template it came from under the key `__template__`.
    """
    objects: list[Manifest] = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template__"] = template
                objects.append(doc)
    return objects


def strip_template_key(obj: Manifest) -> Manifest:
    """The object without the bookkeeping key added by `parse_manifests`."""
    return {k: v for k, v in obj.items() if k != "__template__"}


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    """The objects of one kind."""
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[Manifest], kind: str) -> Manifest:
    """The only object of a kind; fails when there are none or several."""
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def assert_rejected_once(render: Any, values: dict[str, Any], messages: list[str]) -> None:
    """The chart's validateValues fails the render once, with every expected message in it."""
    import helm_python as helm
    import pytest

    with pytest.raises(helm.HelmRenderError) as info:
        render(values)
    text = str(info.value)
    assert text.count("VALUES VALIDATION:") == 1
    for message in messages:
        assert message in text

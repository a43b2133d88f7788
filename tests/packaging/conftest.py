"""Shared fixtures for the packaging tests: the chart rendered by the embedded Helm engine.

There is no helm binary on the dev machines; `helm-python-sdk` (import name `helm_python`) binds
Helm's Go SDK, so `Chart.render` and `lint` here are the same code `helm template` and `helm lint`
run. Each values variant is rendered once per session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency")

from chart_helpers import (  # noqa: E402 - after importorskip: without helm, skip, do not fail
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    VARIANTS,
    Manifest,
    parse_manifests,
    variant_values,
)


@pytest.fixture(scope="session", autouse=True)
def _quiet_helm() -> None:
    """The Go side logs `fail` messages at INFO; the tests assert on the exceptions instead."""
    helm.disable_logging()


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    """The chart loaded once for the session."""
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[[dict[str, Any] | None], dict[str, str]]:
    """Render the chart with values, as `helm install --dry-run` would (schema checked first)."""

    def _render(values: dict[str, Any] | None = None) -> dict[str, str]:
        return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)

    return _render


@pytest.fixture(scope="session")
def rendered(render: Callable[..., dict[str, str]]) -> dict[str, dict[str, str]]:
    """Raw render output per variant: template path -> text."""
    return {variant: render(variant_values(variant)) for variant in VARIANTS}


@pytest.fixture(scope="session")
def manifests(rendered: dict[str, dict[str, str]]) -> dict[str, list[Manifest]]:
    """Parsed objects per variant."""
    return {variant: parse_manifests(text) for variant, text in rendered.items()}

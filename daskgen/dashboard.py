"""Dashboard page and Prometheus metrics for daskgen (see issue: monitoring)."""

from __future__ import annotations

from typing import Any


def install(scheduler: Any, plugin: Any) -> None:
    """Add the /daskgen routes and metrics to a scheduler (placeholder)."""


def uninstall(plugin: Any) -> None:
    """Undo :func:`install` for one plugin."""

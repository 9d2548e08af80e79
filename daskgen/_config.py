"""daskgen's configuration defaults, registered under ``daskgen.*`` at import."""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

_fn = os.path.join(os.path.dirname(__file__), "daskgen.yaml")

with open(_fn) as f:
    _defaults = yaml.safe_load(f)

dask.config.update_defaults(_defaults)


def get(name: str, value: Any = None) -> Any:
    """Return ``value`` if given, else the config value ``daskgen.<name>``."""
    if value is not None:
        return value
    return dask.config.get(f"daskgen.{name}")

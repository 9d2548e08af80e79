"""daskgen's configuration defaults, registered under ``daskgen.*`` at import."""

from __future__ import annotations

import os
from typing import Any

import dask.config
import distributed.config  # noqa: F401  (its defaults first: ours amend them)
import yaml

_fn = os.path.join(os.path.dirname(__file__), "daskgen.yaml")

with open(_fn) as f:
    _defaults = yaml.safe_load(f)

dask.config.update_defaults(_defaults)

# Every client started after `import daskgen` installs daskgen's plugins as it
# starts (daskgen.dask_setup), in order before anything it sends: so an
# asynchronous client needs no `await daskgen.install(client)`. A preload
# list set in the user's own config replaces this default.
dask.config.update_defaults({"distributed": {"client": {"preload": ["daskgen"]}}})


def get(name: str, value: Any = None) -> Any:
    """Return ``value`` if given, else the config value ``daskgen.<name>``."""
    if value is not None:
        return value
    return dask.config.get(f"daskgen.{name}")

"""Test setup. daskgen is imported before distributed.utils_test on purpose:
utils_test snapshots dask.config at import and restores that snapshot in every
gen_cluster test, so daskgen's config defaults must already be registered."""

from __future__ import annotations

import dask
import pytest

import daskgen  # noqa: F401  (must precede distributed.utils_test)

dask.config.set(
    {
        "distributed.scheduler.validate": True,
        "distributed.worker.validate": True,
    }
)

from distributed.utils_test import (  # noqa: E402,F401
    cleanup,
    client,
    cluster_fixture,
    loop,
    loop_in_thread,
)


@pytest.fixture
def cluster_kwargs() -> dict[str, object]:
    return {}

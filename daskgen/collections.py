"""Dask collections from the items of a generator call, without moving data.

A generator that streams one large value in chunks (the second use in Ray's heap-memory pattern)
ends naturally in a Dask collection: the collection's graph refers to the item
keys themselves, so computing on it runs where the chunks already live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from dask.delayed import delayed
from distributed import Future

from daskgen.client import DynamicFuture, FutureGenerator
from daskgen.exceptions import InvalidStateError, a_noun

if TYPE_CHECKING:
    import dask.array
    import dask.bag

__all__ = ["as_array", "as_bag", "as_dataframe"]


def _futures(items: Any, what: str) -> list[Future[Any]]:
    """The item Futures of a static call, a finished stream or a dynamic call."""
    if isinstance(items, DynamicFuture):
        items = items.result()
    elif isinstance(items, FutureGenerator):
        if not items.is_finished() and items.call.end is None:
            raise InvalidStateError(
                f"{what} needs every item, and this stream has not ended. Wait for "
                "it (`gen.completed().result()`) or pass the list of Futures you "
                "took from it."
            )
        items = list(items)
    if isinstance(items, Future):
        items = [items]
    if not isinstance(items, Sequence) or not items:
        raise TypeError(
            f"{what} takes a non-empty list of item Futures (a num_returns=N call's "
            f"result), a DynamicFuture or a finished FutureGenerator; got {items!r}"
        )
    bad = [x for x in items if not isinstance(x, Future)]
    if bad:
        raise TypeError(
            f"{what} takes item Futures; got {type(bad[0]).__name__} {bad[0]!r}"
        )
    return list(items)


def _describe(x: Any) -> tuple[str, tuple[int, ...] | None, str | None]:
    """Runs on the worker holding an item: its kind, shape and dtype."""
    if isinstance(x, np.ndarray):
        return "array", tuple(x.shape), x.dtype.str
    return type(x).__name__, None, None


def as_array(
    items: Any,
    axis: int = 0,
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    dtype: Any = None,
) -> dask.array.Array:
    """A ``dask.array`` that concatenates the items (numpy arrays) along ``axis``.

    Parameters
    ----------
    items : list of Future, DynamicFuture or finished FutureGenerator
        The items of a generator call, each a numpy array.
    axis : int
        The axis along which the chunks are concatenated.
    shapes, dtype : optional
        Each item's shape and the common dtype. When not given, they are read
        on the workers by one tiny task per item.

    Examples
    --------
    >>> def chunks(n):
    ...     for i in range(n):
    ...         yield np.full((1000, 10), i)
    >>> refs = daskgen.submit(chunks, 4, num_returns=4)  # doctest: +SKIP
    >>> x = daskgen.as_array(refs)  # doctest: +SKIP
    >>> x.shape  # doctest: +SKIP
    (4000, 10)
    >>> x.sum().compute()  # doctest: +SKIP
    60000
    """
    import dask.array as da

    futs = _futures(items, "as_array")
    if shapes is None or dtype is None:
        client = futs[0].client
        if client.asynchronous:
            raise InvalidStateError(
                "as_array reads shapes and dtypes with blocking calls; with an "
                "asynchronous client pass shapes= and dtype=."
            )
        info = client.gather(client.map(_describe, futs, pure=False))
        for i, (kind, _, _) in enumerate(info):
            if kind != "array":
                raise TypeError(
                    f"as_array needs numpy arrays; item {i} is a {kind}. Use "
                    "daskgen.as_bag for other values."
                )
        if shapes is None:
            shapes = [s for _, s, _ in info]
        if dtype is None:
            dtypes = {dt for _, _, dt in info}
            if len(dtypes) > 1:
                raise ValueError(
                    f"the items have different dtypes {sorted(dtypes)}; pass "
                    "dtype= to convert them, or yield one dtype."
                )
            dtype = np.dtype(dtypes.pop())
    assert shapes is not None
    if len(shapes) != len(futs):
        raise ValueError(f"got {len(shapes)} shapes for {len(futs)} items")
    ndims = {len(s) for s in shapes}
    if len(ndims) != 1:
        raise ValueError(f"the items have different numbers of dimensions: {ndims}")
    ndim = ndims.pop()
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for {ndim}-d items")
    axis %= ndim
    others = {tuple(d for j, d in enumerate(s) if j != axis) for s in shapes}
    if len(others) != 1:
        raise ValueError(
            f"the items' shapes {sorted(set(map(tuple, shapes)))} differ outside "
            f"axis {axis}, so they cannot be concatenated along it"
        )
    parts = [
        da.from_delayed(delayed(f), shape=tuple(s), dtype=dtype)
        for f, s in zip(futs, shapes, strict=True)
    ]
    return da.concatenate(parts, axis=axis)


def as_bag(items: Any, *, partitions: bool = False) -> dask.bag.Bag:
    """A ``dask.bag`` of the items' values.

    Parameters
    ----------
    items : list of Future, DynamicFuture or finished FutureGenerator
    partitions : bool
        If True, each item is a list that is one partition of the bag;
        otherwise each item is one element (one partition each).

    Examples
    --------
    >>> b = daskgen.as_bag(daskgen.submit(produce, 3, num_returns=3))  # doctest: +SKIP
    >>> b.sum().compute()  # doctest: +SKIP
    30
    """
    import dask.bag as db

    futs = _futures(items, "as_bag")
    if partitions:
        return db.from_delayed([delayed(f) for f in futs])
    return db.from_delayed([delayed(_one)(f) for f in futs])


def _one(x: Any) -> list[Any]:
    return [x]


def as_dataframe(items: Any, *, meta: Any = None) -> Any:
    """A ``dask.dataframe`` whose partitions are the yielded pandas DataFrames.

    Needs pandas (and dask's dataframe support); ``meta`` (an empty frame with
    the right columns and dtypes) is read from the first item when not given.

    Examples
    --------
    >>> ddf = daskgen.as_dataframe(refs)  # doctest: +SKIP
    """
    try:
        import dask.dataframe as dd
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError(
            "daskgen.as_dataframe needs pandas and dask's dataframe support: "
            "pip install 'dask[dataframe]'"
        ) from None
    futs = _futures(items, "as_dataframe")
    if meta is None:
        client = futs[0].client
        meta = client.submit(_meta, futs[0], pure=False).result()
    return dd.from_delayed([delayed(f) for f in futs], meta=meta)


def _meta(x: Any) -> Any:
    import pandas as pd

    if not isinstance(x, (pd.DataFrame, pd.Series)):
        raise TypeError(
            f"as_dataframe needs pandas DataFrames; an item is {a_noun(type(x).__name__)}"
        )
    return x.iloc[:0]

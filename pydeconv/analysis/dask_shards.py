"""Mining an atlas on a Dask cluster: shards of the image list, one state each, merged.

Each task loads the model from its path (the workers must see the same files), mines its shard
(whole batches, :func:`~pydeconv.analysis.mine.shard_batches`) into a
:class:`~pydeconv.analysis.mine.MineState` and returns it; the client merges the states. The tie
rule makes the merge exact, so the result equals the single-process run bit for bit. Dask is the
optional extra ``pydeconv[dask]``, imported here only when used.
"""

from __future__ import annotations

import functools
from typing import Any

from pydeconv.analysis import extras, mine
from pydeconv.errors import PydeconvError


def _mine_shard(
    model: str,
    images: list[str],
    layers: list[str],
    k: int,
    batch_size: int,
    ranking: str,
    class_: int | None,
    ids: list[int],
    threads: int | None,
) -> bytes:
    """One task: load the model, mine ``ids``, return the state as bytes (no pickled arrays)."""
    import pydeconv

    net = pydeconv.load(model)
    score = None if class_ is None else mine.relevance_score(class_)
    st = mine.mine(
        net,
        images,
        layers,
        k=k,
        batch_size=batch_size,
        score=score,
        ranking=ranking,
        class_=class_,
        ids=ids,
        threads=threads,
    )
    return st.to_bytes()


def mine_on_dask(
    client_or_address: Any,
    model: str,
    state: mine.MineState,
    n_shards: int | None = None,
    threads: int | None = None,
    log: Any = None,
) -> mine.MineState:
    """Mine the unfinished images of ``state`` on a Dask cluster (a ``Client`` or a scheduler
    address) and return ``state`` merged with every shard's state. ``model`` is the path each
    worker loads. ``n_shards``: default twice the number of workers."""
    distributed = extras.require("dask.distributed", "dask")
    if not model:
        raise PydeconvError("Dask workers load the model from its file: give a model path")
    client = client_or_address
    own = False
    if not isinstance(client, distributed.Client):
        try:
            client = distributed.Client(client_or_address, timeout="20s")
        except OSError as exc:
            raise PydeconvError(
                f"cannot reach the Dask scheduler at {client_or_address} ({exc})"
            ) from None
        own = True
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        cut = mine.shard_batches(len(state.images), state.batch_size, n_shards or 2 * workers)
        parts = [p for p in ([i for i in part if not state.done[i]] for part in cut) if p]
        if not parts:
            return state
        if log is not None:
            todo = sum(map(len, parts))
            log(f"mining {todo} image(s) in {len(parts)} shard(s) on {workers} Dask worker(s)")
        futures = client.map(
            _mine_shard,
            [model] * len(parts),
            [state.images] * len(parts),
            [state.layers] * len(parts),
            [state.k] * len(parts),
            [state.batch_size] * len(parts),
            [state.ranking] * len(parts),
            [state.cls] * len(parts),
            parts,
            [threads] * len(parts),
            pure=False,
        )
        results = client.gather(futures)
    finally:
        if own:
            client.close()
    states = [mine.MineState.from_bytes(b, "a Dask shard") for b in results]
    return functools.reduce(mine.merge, states, state)

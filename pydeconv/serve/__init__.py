"""``pydeconv serve``: explore a network in the browser (docs/SERVE.md).

Needs the ``serve`` extra (Starlette and uvicorn): ``pip install 'pydeconv[serve]'``. Nothing
here is imported by ``import pydeconv``; :func:`run` imports the server stack when it starts.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence
from typing import Any

LOOPBACK = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_app(
    net: Any,
    folders: Sequence[str] = (),
    atlas_dir: str | None = None,
    host: str = LOOPBACK,
    **state_options: Any,
) -> Any:
    """The Starlette app for ``net`` and the images in ``folders`` (the tests start it with
    uvicorn on a free port); ``app.state.pydeconv`` is its :class:`~pydeconv.serve.state.State`.
    On a loopback ``host`` it answers only requests addressed to 127.0.0.1 or localhost."""
    from pydeconv.analysis.extras import require

    require("starlette", "serve")
    from pydeconv.serve.app import LOCAL_NAMES, create_app
    from pydeconv.serve.state import State

    state = State(net, folders, **state_options)
    atlas = None
    if atlas_dir is not None:
        from pydeconv.serve.atlas import Atlas

        atlas = Atlas(atlas_dir, net)
    hosts = (*LOCAL_NAMES, host) if _is_loopback(host) else None
    app = create_app(state, atlas, hosts)
    app.state.pydeconv = state
    return app


def run(
    model: str,
    folders: Sequence[str] = (),
    atlas_dir: str | None = None,
    host: str = LOOPBACK,
    port: int = 8765,
    threads: int | None = None,
    cache_bytes: int | None = None,
    log: Any = None,
) -> int:
    """Load ``model`` and serve it until interrupted."""
    from pydeconv.analysis.extras import require

    require("starlette", "serve")
    uvicorn = require("uvicorn", "serve")
    import pydeconv

    say = log or (lambda msg: print(f"pydeconv: {msg}", file=sys.stderr, flush=True))
    if not _is_loopback(host):
        say(
            f"warning: serving on {host}: anyone who can reach this address can use the server "
            "(it has no authentication); the default is 127.0.0.1"
        )
    net = pydeconv.load(model)
    options: dict[str, Any] = {"threads": threads, "model_path": str(model)}
    if cache_bytes is not None:
        options["cache_bytes"] = cache_bytes
    app = make_app(net, folders, atlas_dir, host, **options)
    shown = f"[{host}]" if ":" in host else host
    n = len(app.state.pydeconv.images)
    print(f"pydeconv serve: {model}, {n} image(s): http://{shown}:{port}/", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        app.state.pydeconv.close()
    return 0

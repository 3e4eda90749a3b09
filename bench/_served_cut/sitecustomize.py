"""In a served cache-hit project: the layer named by BENCH_LAYER_CUT made a no-op, for bench.layers.

Python imports this module at start-up when its folder is on PYTHONPATH, which bench._layers_served
sets for `uv run serve` and nothing else. Without BENCH_LAYER_CUT it does nothing. With it, at the
app's first request (after the lifespan ran as shipped) it applies the variant of that name from
bench/_layers_driver.py to the app: the very patches the in-process measurement uses. It says so
on stderr, which the runner checks, so a cut that did not happen cannot pass for a free layer.
"""

import importlib
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any


def _install(cut: str) -> None:
    # bench/ itself, for _layers_driver; last, so that it shadows nothing of the project's.
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    _layers_driver = importlib.import_module("_layers_driver")
    from starlette.applications import Starlette

    call = Starlette.__call__
    # Never closed: the cut lasts as long as the process.
    patches = ExitStack()
    applied = False

    async def cut_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        nonlocal applied
        # At the first request, as the in-process driver does: after the lifespan has run as
        # shipped (the variant without FastAPI would answer the lifespan's messages too).
        if not applied and scope["type"] == "http":
            applied = True
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            variants = _layers_driver.variants(self, {})
            if cut not in variants:
                raise SystemExit(f"bench: no layer variant {cut!r}; there are {sorted(variants)}")
            variants[cut](patches)
            print(f"bench: layer cut applied: {cut}", file=sys.stderr, flush=True)
        await call(self, scope, receive, send)

    Starlette.__call__ = cut_call  # type: ignore[method-assign]


if os.environ.get("BENCH_LAYER_CUT"):
    _install(os.environ["BENCH_LAYER_CUT"])

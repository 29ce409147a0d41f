"""The analysis verbs of the ``pydeconv`` command line.

Each name is a module ``pydeconv.analysis.<name>`` with ``register(sub, common, writes)``: it adds
its subparser to ``sub`` (with ``parents=[common]`` or ``[common, writes]``, the options every
command / every writing command takes) and sets ``func`` to a function of the parsed arguments
that returns the exit status. Errors are raised as :class:`pydeconv.errors.PydeconvError`; the
CLI turns them into one line.
"""

from __future__ import annotations

import argparse
import importlib

COMMANDS: list[str] = [
    # one line per verb module, appended by the module's author
    # -- atlas
    "atlas",
]


def register_all(
    sub: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    writes: argparse.ArgumentParser,
) -> None:
    for name in COMMANDS:
        importlib.import_module(f"pydeconv.analysis.{name}").register(sub, common, writes)

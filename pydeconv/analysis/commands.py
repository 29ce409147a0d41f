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
    "atlas",  # Fig. 2: top-k projections per feature map over an image set
    "occlusion",  # Fig. 7
    "invariance",  # Fig. 5
    "filters",  # Fig. 6
    "correspondence",  # Table 1
    "fashion_mnist",  # a labelled set from Debian's dataset-fashion-mnist
    "probe",  # Sec. 5.2: how deep to retrain
    "specialise",  # how specialised each layer's channels are
    "sanity",  # Adebayo et al.'s cascading randomisation
    "evolution",  # Fig. 4: feature maps over training checkpoints
]


def register_all(
    sub: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    writes: argparse.ArgumentParser,
) -> None:
    for name in COMMANDS:
        importlib.import_module(f"pydeconv.analysis.{name}").register(sub, common, writes)

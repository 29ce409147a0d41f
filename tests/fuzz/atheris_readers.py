"""Coverage-guided fuzzing of pydeconv's Python readers with atheris (libFuzzer for Python).

  python tests/fuzz/atheris_readers.py TARGET [--allow-known-escapes] [libFuzzer options]
                                       [CORPUS ...]
  python tests/fuzz/atheris_readers.py --write-seeds TARGET FOLDER    (valid inputs to start from)
  e.g. python tests/fuzz/atheris_readers.py npy -max_total_time=60 /tmp/corpus-npy

Targets (each input is taken through pydeconv.load, forward and one projection when it loads):
  npz    the whole model file (zip archive) as bytes
  graph  the JSON graph text, packed with valid parameters into a valid .npz (valid CRCs)
  npy    one parameter member's .npy bytes, packed into an otherwise valid .npz (valid CRCs)
  onnx   an ONNX protobuf file (pydeconv.onnx.import_onnx through pydeconv.load)
  image  an image file (pydeconv.image.load for a tiny seeded net)
  darknet  a Darknet .cfg (pydeconv.darknet's cfg parser and converter), with a .weights file
         of the size the cfg asks for (from pydeconv.darknet's plan; the seed net's otherwise)
  weights  a Darknet .weights file (header, blobs) for a fixed tiny yolov3-tiny-shaped cfg

pydeconv's Python code is instrumented for coverage. An input passes when it is accepted or
refused with a pydeconv.errors exception; any other exception is a finding: atheris prints it and
saves the input (crash-*). With --allow-known-escapes the exception types that issue 13 section 3
lists today (run_mutants.KNOWN_ESCAPES) are printed loudly instead, once per kind, and fuzzing
goes on. The process runs under RLIMIT_AS (PYDECONV_FUZZ_MEMORY_MIB, default 2048).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # pydeconv itself: the installed one, or the checkout with PYTHONPATH=.

import mutate  # noqa: E402
import run_mutants  # noqa: E402

with atheris.instrument_imports(include=["pydeconv"]):
    import pydeconv  # noqa: E402
    import pydeconv.darknet  # noqa: E402,F401
    import pydeconv.image  # noqa: E402,F401
    import pydeconv.onnx  # noqa: E402,F401

TARGETS = ("npz", "graph", "npy", "onnx", "image", "darknet", "weights")
KIND = {
    "npz": "npz",
    "graph": "npz",
    "npy": "npz",
    "onnx": "onnx",
    "image": "image",
    "darknet": "darknet",
    "weights": "darknet",
}
_GRAPH, _PARAMS = mutate.seed_model(2, 0)  # the dense head: the smallest model
_seen_known: set = set()


def _darknet_cfg() -> tuple:
    """The fixed cfg of the ``weights`` target: yolov3-tiny's structure at 32 x 32."""
    import darknet_files as df

    return df, df.cfg_text(df.V3_TINY, width=32, height=32).encode()


def _pack(target: str, data: bytes) -> list[tuple[str, bytes]]:
    """The files the target's input becomes [(suffix, bytes)], the one to load first."""
    if target == "darknet":
        df, _ = _darknet_cfg()
        try:
            from pydeconv.darknet.cfg import parse_cfg
            from pydeconv.darknet.convert import plan

            total = sum(b.count for b in plan(parse_cfg(data.decode("utf-8")), None).blobs)
        except Exception:  # noqa: BLE001 - the load below reports what the reader does
            total = -1
        if 0 <= total <= 1 << 18:
            weights = df.header() + mutate.np.full(total, 0.5, mutate.np.float32).tobytes()
        else:
            weights = df.weights_bytes(df.V3_TINY)
        return [("cfg", data), ("weights", weights)]
    if target == "weights":
        return [("cfg", _darknet_cfg()[1]), ("weights", data)]
    return [_pack1(target, data)]


def _pack1(target: str, data: bytes) -> tuple[str, bytes]:
    if target == "graph":
        return "npz", mutate.model_bytes(data, _PARAMS)
    if target == "npy":
        graph = mutate.np.frombuffer(mutate.graph_bytes(_GRAPH), mutate.np.uint8)
        members = [("__graph__.npy", mutate.npy_bytes(graph))]
        members += [
            (f"{k}.npy", data if k == "fc1/weight" else mutate.npy_bytes(v))
            for k, v in _PARAMS.items()
        ]
        return "npz", mutate.zip_bytes(members)
    if target == "image":
        return "png", data  # Pillow reads the format from the bytes, not the name
    return target, data


def write_seeds(target: str, folder: str) -> None:
    """Valid starting inputs for ``target`` (plus a few structure-aware mutants) into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    seeds = []
    if target in ("npz", "graph"):
        for i in range(5):
            graph, params = mutate.seed_model(i, i)
            seeds.append(
                mutate.model_bytes(graph, params) if target == "npz" else mutate.graph_bytes(graph)
            )
    elif target == "npy":
        seeds = [
            mutate.npy_bytes(_PARAMS["fc1/weight"]),
            mutate.npy_bytes(_PARAMS["fc1/weight"], version=(2, 0)),
        ]
    elif target == "onnx":
        seeds = [
            mutate.onnx_seed(mutate.np.random.default_rng(i), i).to_bytes(None) for i in range(5)
        ]
    elif target == "darknet":
        import darknet_files as df

        nets = {**df.NETS, **df.CLASSIFIERS}
        seeds = [df.cfg_text(secs, width=32, height=32).encode() for secs in nets.values()]
    elif target == "weights":
        import darknet_files as df

        seeds = [df.weights_bytes(df.V3_TINY, v) for v in ((0, 2, 0), (0, 1, 0))]
    else:
        import random

        rng = random.Random(0)
        seeds = [mutate._pil_bytes(rng, fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "PPM")]
    if target in ("npz", "onnx", "image"):  # mutants reach past the checks random bytes stop at
        seeds += [mutate.mutant(KIND[target], s)[1] for s in range(50)]
    if target in ("darknet", "weights"):
        files = [dict(mutate.mutant_files("darknet", s)) for s in range(50)]
        seeds += [f["cfg" if target == "darknet" else "weights"] for f in files if "weights" in f]
    for i, blob in enumerate(seeds):
        with open(os.path.join(folder, f"seed{i}"), "wb") as f:
            f.write(blob)


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) == 3 and argv[0] == "--write-seeds":
        write_seeds(argv[1], argv[2])
        return
    if not argv or argv[0] not in TARGETS:
        sys.exit(
            f"usage: atheris_readers.py {{{'|'.join(TARGETS)}}} [--allow-known-escapes] "
            "[libFuzzer args]"
        )
    target = argv.pop(0)
    allow_known = "--allow-known-escapes" in argv
    argv = [a for a in argv if a != "--allow-known-escapes"]
    run_mutants._limit_memory(int(os.environ.get("PYDECONV_FUZZ_MEMORY_MIB", "2048")))
    import warnings

    warnings.simplefilter("ignore")
    folder = tempfile.mkdtemp(prefix=f"pydeconv-atheris-{target}-")
    kind = KIND[target]

    def one_input(data: bytes) -> None:
        files = _pack(target, data)
        for suffix, blob in files:
            with open(os.path.join(folder, f"input.{suffix}"), "wb") as f:
                f.write(blob)
        path = os.path.join(folder, f"input.{files[0][0]}")
        result = run_mutants.run_one(path, "image" if kind == "image" else "model", len(data))
        if result["outcome"] in ("accepted", "rejected"):
            return
        if allow_known and run_mutants._known(kind, result["outcome"], result["type"]):
            sig = (result["type"], re.sub(r"\d+", "N", result["msg"])[:120])
            if sig not in _seen_known:
                _seen_known.add(sig)
                print(
                    f"!! KNOWN ESCAPE (issue 13 §3, downgraded by --allow-known-escapes) {target}: "
                    f"{result['type']}: {result['msg'][:200]}",
                    flush=True,
                )
            return
        raise RuntimeError(
            f"{result['outcome']} from the {target} reader: {result['type']}: {result['msg']}"
        )

    atheris.Setup([sys.argv[0]] + argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

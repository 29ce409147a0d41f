"""Runs structure-aware mutants (tests/fuzz/mutate.py) through load, forward and one projection in
memory-capped worker processes, and classifies every outcome (issue 13 section 5).

  python tests/fuzz/run_mutants.py --models 20000 --images 5000 --darknet 3000 --workers 2

Each worker is a separate Python process with RLIMIT_AS (default 2 GiB) and one thread of compute;
it serves many inputs and is restarted after a crash or a timeout. Outcomes:

  accepted   loaded, ran forward and a projection (or was refused by none of them)
  rejected   a pydeconv.errors exception (the documented family): fine
  escaped    any other exception: a bug (issue 13 section 3), printed with type, message and seed
  memory     MemoryError / std::bad_alloc: the memory cap was hit (a declared size was not limited)
  crash      the worker died from a signal
  hang       no answer within --timeout seconds
  harness    the mutator itself failed on this seed (a bug in tests/fuzz/mutate.py; fails the run)

The exit status is 1 on any crash, hang, escape, memory or harness outcome. --allow-known-escapes
turns the escapes and memory outcomes whose (input kind, exception type) is listed in KNOWN_ESCAPES
(what issue 13 section 3 describes today) into a loud report instead, so the stage can run in CI
before those fixes land; crashes, hangs and any other escape still fail. Reproduce one input with
``python tests/fuzz/mutate.py KIND SEED /tmp/x`` then
``python tests/fuzz/run_mutants.py --replay /tmp/x.npz`` (a Darknet mutant: ``/tmp/x.cfg``, its
``/tmp/x.weights`` beside it).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# (input kind, exception type) pairs that escape today (issue 13 section 3: every failure caused by
# input must be a pydeconv.errors exception). Only these are downgraded by --allow-known-escapes;
# delete a line when its fix lands, and the stage fails again if it comes back. "issue" marks the
# ones the text lists; "new" the ones this stage found (same section, same fix).
KNOWN_ESCAPES: dict[tuple[str, str], str] = {}  # empty since issue 13 section 3 (pydeconv.Limits)
# Files loaded as models (a Darknet .cfg with the .weights of the same stem beside it).
MODEL_SUFFIXES = (".npz", ".onnx", ".cfg")
OUTCOMES = ("accepted", "rejected", "escaped", "memory", "crash", "hang", "harness")


# -- worker side -----------------------------------------------------------------------------------
def _limit_memory(mib: int) -> None:
    import resource

    if mib > 0:
        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))
        # What a file may declare must fit under the cap with room to run it: pydeconv.Limits'
        # max_tensor_bytes (4 GiB by default, above a 2 GiB cap) becomes an eighth of the cap, so
        # a model at the limit still runs its forward pass and a projection (whose gradients take
        # a few times the activations) here, and a MemoryError means a declared size that no
        # limit checked. (A 6 KB ONNX file whose ConvTranspose declares a 1.45 GB output passes
        # the default limit by design and cannot run in 2 GiB.)
        import pydeconv

        pydeconv.set_limits(
            max_tensor_bytes=min(pydeconv.get_limits().max_tensor_bytes, (mib << 20) // 8)
        )


def _run_model(path: str, seed: int) -> str:
    import pydeconv

    net = pydeconv.load(path)
    return "load+" + _run_net(net, None, seed)


def _run_net(net, x, seed: int) -> str:
    import numpy as np

    if x is None:
        shape = (1,) + tuple(net.input_shape)
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    layer = net.layers[seed % len(net.layers)]
    _, trace = net.forward(x, keep=[layer])
    channels = trace.activation(layer).shape[1]
    net.project(
        trace, layer, seed % channels, at="max", rule=("deconvnet", "guided", "backprop")[seed % 3]
    )
    return "forward+project"


_image_nets: dict = {}


def _run_image(path: str, seed: int) -> str:
    import mutate

    import pydeconv
    import pydeconv.image

    i = seed % 3  # three preprocessings: RGB with mean/std, grey input, BGR with a resize
    if i not in _image_nets:
        graph, params = mutate.seed_model(0, 0)
        if i == 1:
            graph["input"]["shape"][0] = 1
            graph["layers"][0]["params"]["weight"][1] = 1
            params["conv1/weight"] = params["conv1/weight"][:, :1].copy()
            graph["preprocess"] = {"channel_order": "L"}
        elif i == 2:
            graph["preprocess"] = {"channel_order": "BGR", "mean": 0.5, "std": 0.25}
        _image_nets[i] = pydeconv.build(graph, params)
    net = _image_nets[i]
    x = pydeconv.image.load(path, net)
    return "image+" + _run_net(net, x, seed)


def _classify(exc: BaseException) -> str:
    from pydeconv.errors import PydeconvError

    if isinstance(exc, PydeconvError):
        return "rejected"
    if isinstance(exc, MemoryError):
        return "memory"
    return "escaped"


def run_one(path: str, kind: str, seed: int) -> dict:
    """Runs one file; the outcome as a dict (what a worker reports)."""
    try:
        stage = _run_image(path, seed) if kind == "image" else _run_model(path, seed)
        return {"outcome": "accepted", "stage": stage}
    except BaseException as exc:  # noqa: BLE001 - classifying every exception is the point
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        msg = str(exc).splitlines()[0][:300] if str(exc) else ""
        mro = [f"{t.__module__}.{t.__qualname__}" for t in type(exc).__mro__]
        return {"outcome": _classify(exc), "type": mro[0], "msg": msg}


def worker_main(mem_mib: int) -> None:
    """Reads "KIND SEED" or "file PATH" lines, answers one JSON line each on the original stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the library prints goes to stderr, never into the protocol
    sys.path.insert(0, HERE)
    _limit_memory(mem_mib)
    import warnings

    warnings.simplefilter("ignore")
    import mutate

    import pydeconv  # noqa: F401  (imported before the first input: its cost is not a timeout)
    import pydeconv.image  # noqa: F401
    import pydeconv.onnx  # noqa: F401

    tmp = tempfile.mkdtemp(prefix="pydeconv-fuzz-")
    for line in sys.stdin:
        kind, arg = line.split(None, 1)
        arg = arg.strip()
        if kind == "file":
            path, seed = arg, 0
            kind = "model" if path.endswith(MODEL_SUFFIXES) else "image"
        else:
            seed = int(arg)
            try:
                files = mutate.mutant_files(kind, seed)
            except Exception as exc:  # a bug of the mutator, not of pydeconv: reported apart
                proto.write(
                    json.dumps({"outcome": "harness", "type": type(exc).__name__, "msg": str(exc)})
                    + "\n"
                )
                continue
            for old in os.listdir(tmp):  # a Darknet mutant may come without its .weights
                os.remove(os.path.join(tmp, old))
            path = os.path.join(tmp, f"m.{files[0][0]}")
            for suffix, data in files:
                with open(os.path.join(tmp, f"m.{suffix}"), "wb") as f:
                    f.write(data)
        result = run_one(path, kind, seed)
        proto.write(json.dumps(result) + "\n")


# -- parent side -----------------------------------------------------------------------------------
class Worker:
    def __init__(self, mem_mib: int, threads: int):
        # the workers import the pydeconv this process imports (the checkout's or the installed one)
        import pydeconv

        where = os.path.dirname(os.path.dirname(os.path.abspath(pydeconv.__file__)))
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(threads),
            PYTHONPATH=where + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--memory-mib", str(mem_mib)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            text=True,
            bufsize=1,
        )
        self.job = None
        self.deadline = 0.0

    def send(self, job, timeout):
        self.job = job
        self.deadline = time.monotonic() + timeout
        self.proc.stdin.write(f"{job[0]} {job[1]}\n")
        self.proc.stdin.flush()

    def kill(self):
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()


def run(jobs, workers: int, timeout: float, mem_mib: int, startup: float = 60.0):
    """Runs (kind, seed) jobs; yields (job, result dict)."""
    jobs = collections.deque(jobs)
    sel = selectors.DefaultSelector()
    pool = []

    def start():
        w = Worker(mem_mib, 1)
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        pool.append(w)
        return w

    def replace(w):
        sel.unregister(w.proc.stdout)
        pool.remove(w)
        w.kill()
        return start()

    for _ in range(min(workers, len(jobs))):
        w = start()
        if jobs:
            w.send(jobs.popleft(), timeout + startup)  # the first job pays the imports
    while any(w.job for w in pool):
        now = time.monotonic()
        wait = max(0.05, min(w.deadline for w in pool if w.job) - now)
        for key, _ in sel.select(wait):
            w = key.data
            line = w.proc.stdout.readline()
            job = w.job
            if line:
                result = json.loads(line)
                w.job = None
            else:  # the worker died: a crash (signal) or an exit it should not have made
                rc = w.proc.wait()
                sig = -rc if rc < 0 else None
                name = signal.Signals(sig).name if sig else f"exit status {rc}"
                result = {"outcome": "crash", "type": name, "msg": f"worker died ({name})"}
                w = replace(w)
            yield job, result
            if jobs:
                w.send(jobs.popleft(), timeout)
        now = time.monotonic()
        for w in list(pool):
            if w.job and now > w.deadline:
                job = w.job
                w = replace(w)
                yield (
                    job,
                    {"outcome": "hang", "type": "timeout", "msg": f"no answer in {timeout:g} s"},
                )
                if jobs:
                    w.send(jobs.popleft(), timeout + startup)
    for w in pool:
        w.proc.stdin.close()
        w.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=2000, help="model mutants (.npz and .onnx)")
    ap.add_argument(
        "--onnx-share", type=float, default=0.25, help="share of the model mutants that are ONNX"
    )
    ap.add_argument("--images", type=int, default=500, help="image mutants")
    ap.add_argument(
        "--darknet", type=int, default=300, help="Darknet mutants (a .cfg and its .weights)"
    )
    ap.add_argument(
        "--seed", type=int, default=0, help="first seed (seeds are consecutive from here)"
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per input before it counts as a hang"
    )
    ap.add_argument("--memory-mib", type=int, default=2048, help="RLIMIT_AS of each worker")
    ap.add_argument(
        "--allow-known-escapes",
        action="store_true",
        help="report (not fail on) the escape types issue 13 section 3 lists today",
    )
    ap.add_argument(
        "--replay", nargs="*", metavar="FILE", help="run these files instead of mutants"
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.memory_mib)
        return 0

    if args.replay is not None:
        jobs = [("file", os.path.abspath(p)) for p in args.replay]
    else:
        n_onnx = int(args.models * args.onnx_share)
        jobs = [("npz", args.seed + i) for i in range(args.models - n_onnx)]
        jobs += [("onnx", args.seed + i) for i in range(n_onnx)]
        jobs += [("image", args.seed + i) for i in range(args.images)]
        jobs += [("darknet", args.seed + i) for i in range(args.darknet)]
        # interleave kinds so a partial run (or a slow kind) still covers all three
        jobs.sort(key=lambda j: (j[1], j[0]))
    t0 = time.monotonic()
    counts = collections.Counter()
    findings = collections.defaultdict(list)  # (kind, outcome, type, msg head) -> seeds
    done = 0
    for job, result in run(jobs, args.workers, args.timeout, args.memory_mib):
        outcome = result["outcome"]
        counts[(job[0], outcome)] += 1
        if outcome not in ("accepted", "rejected"):
            head = re.sub(r"\d+", "N", result.get("msg", ""))[
                :160
            ]  # group messages that differ in numbers
            findings[(job[0], outcome, result.get("type", ""), head)].append(job[1])
            if len(findings[(job[0], outcome, result.get("type", ""), head)]) == 1:
                print(
                    f"  {outcome.upper():8} {job[0]} {job[1]}: {result.get('type')}: {head}",
                    flush=True,
                )
        done += 1
        if done % 2000 == 0:
            print(f"  ... {done}/{len(jobs)} inputs, {time.monotonic() - t0:.0f} s", flush=True)
    wall = time.monotonic() - t0
    return report(counts, findings, wall, args)


def _known(kind: str, outcome: str, typ: str) -> bool:
    if outcome == "memory":
        return (kind, "builtins.MemoryError") in KNOWN_ESCAPES
    return outcome == "escaped" and (kind, typ) in KNOWN_ESCAPES


def report(counts, findings, wall, args) -> int:
    kinds = sorted({k for k, _ in counts})
    print(
        f"\n== structure-aware fuzzing: {sum(counts.values())} inputs in {wall:.0f} s "
        f"({args.workers} workers, {args.memory_mib} MiB each, {args.timeout:g} s per input)"
    )
    print(f"  {'kind':8}" + "".join(f"{o:>10}" for o in OUTCOMES) + f"{'total':>10}")
    for k in kinds:
        row = [counts[(k, o)] for o in OUTCOMES]
        print(f"  {k:8}" + "".join(f"{v:>10}" for v in row) + f"{sum(row):>10}")
    tot = [sum(counts[(k, o)] for k in kinds) for o in OUTCOMES]
    print(f"  {'all':8}" + "".join(f"{v:>10}" for v in tot) + f"{sum(tot):>10}")
    failing, known = [], []
    for (kind, outcome, typ, head), seeds in sorted(findings.items(), key=lambda kv: -len(kv[1])):
        line = (
            f"  {len(seeds):6} x {outcome:8} {kind:6} {typ}: {head}  "
            f"(seeds {', '.join(map(str, seeds[:5]))}" + (", ..." if len(seeds) > 5 else "") + ")"
        )
        is_known = _known(kind, outcome, typ)
        (known if is_known and args.allow_known_escapes else failing).append(line)
    if failing:
        print(
            f"\nFAILURES ({len(failing)} kinds of outcome; "
            "reproduce: python tests/fuzz/mutate.py KIND SEED /tmp/x):"
        )
        print("\n".join(failing))
    if known:
        n = sum(len(s) for (k, o, t, h), s in findings.items() if _known(k, o, t))
        print("\n" + "!" * 100)
        print(
            f"!! {n} KNOWN ESCAPES DOWNGRADED by --allow-known-escapes "
            "(issue 13 §3 is not fixed yet)."
        )
        print(
            "!! Each is a failure caused by input that raised outside pydeconv.errors; "
            "without the flag"
        )
        print(
            "!! this stage FAILS. Remove the flag (and the KNOWN_ESCAPES line) when the fix lands."
        )
        print("!" * 100)
        print("\n".join(known))
    print(f"\nresult: {'FAIL' if failing else 'ok'}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())

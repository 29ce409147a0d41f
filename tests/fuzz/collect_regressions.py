"""Runs structure-aware mutants and keeps the smallest input of every kind of finding.

  python tests/fuzz/collect_regressions.py --models 10000 --images 3000 OUT_FOLDER

A finding is an outcome other than accepted/rejected; its kind is (input kind, outcome, exception
type, the message's first words with numbers blanked). Writes one file per kind into OUT_FOLDER,
named KIND-OUTCOME-TYPE-N.SUFFIX, and prints one README line per file (seed, type, message), for
tests/fuzz/corpus/regressions/ (replayed by tests/test_fuzz_regressions.py).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mutate  # noqa: E402
import run_mutants  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--models", type=int, default=10000)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    n_onnx = args.models // 4
    jobs = [("npz", i) for i in range(args.models - n_onnx)] + [("onnx", i) for i in range(n_onnx)]
    jobs += [("image", i) for i in range(args.images)]
    best = {}
    for (kind, seed), result in run_mutants.run(jobs, args.workers, 10.0, 2048):
        if result["outcome"] in ("accepted", "rejected"):
            continue
        words = re.sub(r"\d+", "N", result.get("msg", "")).split()[:4]
        key = (kind, result["outcome"], result.get("type", ""), " ".join(words))
        size = len(mutate.mutant(kind, seed)[1])
        if key not in best or size < best[key][0]:
            best[key] = (size, seed, result)
    os.makedirs(args.out, exist_ok=True)
    count = {}
    for (kind, outcome, typ, _), (size, seed, result) in sorted(best.items()):
        short = typ.rsplit(".", 1)[-1]
        count[(kind, short)] = count.get((kind, short), 0) + 1
        suffix, data = mutate.mutant(kind, seed)
        name = f"{kind}-{outcome}-{short}-{count[(kind, short)]}.{suffix}"
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        print(
            f"{name}: {kind} seed {seed}, {size} bytes: {outcome} {typ}: "
            f"{result.get('msg', '')[:150]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

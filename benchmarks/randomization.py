"""Randomization test speed: the vectorised statistic vs sklearn's F1 per permutation, in one run.

    python benchmarks/randomization.py [--n-cells 2000] [--n-permutations 10000] [--loop-permutations 200]

Prints permutations/s of both (the sklearn loop on a sample of permutations) and their ratio. The
study's Table 1 runs 10,000 permutations per model pair and checkpoint; this is why it is vectorised.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from lnpstore.models import randomization as R
from sklearn.metrics import f1_score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-cells", type=int, default=2000)
    ap.add_argument("--n-permutations", type=int, default=10_000)
    ap.add_argument("--loop-permutations", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    y = (rng.normal(size=args.n_cells) > 0).astype(float)
    pa = np.clip(y * 0.6 + rng.normal(0.2, 0.3, args.n_cells), 0, 1)
    pb = np.clip(y * 0.6 + rng.normal(0.2, 0.3, args.n_cells), 0, 1)

    t0 = time.perf_counter()
    res = R.randomization_f1(y, pa, pb, n_permutations=args.n_permutations, seed=0)
    vec_s = time.perf_counter() - t0

    a, b = pa >= 0.5, pb >= 0.5
    t0 = time.perf_counter()
    for _ in range(args.loop_permutations):
        swap = rng.random(args.n_cells) < 0.5
        f1_score(y, np.where(swap, b, a), average="weighted") - f1_score(
            y, np.where(swap, a, b), average="weighted"
        )
    loop_s = time.perf_counter() - t0

    vec_rate = args.n_permutations / vec_s
    loop_rate = args.loop_permutations / loop_s
    print(f"cells {args.n_cells}, p = {res.p_value:.4f}")
    print(f"vectorised: {args.n_permutations} permutations in {vec_s:.2f} s = {vec_rate:,.0f} permutations/s")
    print(
        f"sklearn loop: {args.loop_permutations} permutations in {loop_s:.2f} s = {loop_rate:,.0f} permutations/s"
    )
    print(f"speed-up: x{vec_rate / loop_rate:.0f}")


if __name__ == "__main__":
    main()

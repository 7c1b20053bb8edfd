"""Many modes: the JAX LOBPCG in one block against batches of modes, same matrix, same run.

    python benchmarks/bench_batched_modes.py                      # N = 4000 LJ fcc, k = 200
    python benchmarks/bench_batched_modes.py --cells 8 --k 100 --batches 50

normal_modes solves in batches only when one block does not fit in memory; here the batch size
is imposed (the memory plan replaced by a fixed answer) so that both run with the same product
(padded block rows) and preconditioner, and only the batching differs. Rattled LJ fcc, rc 2.5
sigma, float64, tol 1e-10; each batched result is compared with the one-block result
(eigenvalues, relative) and the time ratio printed.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mdhess  # noqa: E402
import mdhess.modes._jax_lobpcg as jl  # noqa: E402


def fcc(n_cells, a=1.5496, rattle=0.02, seed=0):
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = ((g + basis[None]).reshape(-1, 3)) * a
    return R + np.random.default_rng(seed).normal(scale=rattle, size=R.shape), np.eye(3) * n_cells * a


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=10, help="fcc cells a side (N = 4 cells^3)")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--batches", default="100,50", help="batch sizes to compare with one block")
    args = ap.parse_args(argv)
    R, box = fcc(args.cells)
    B = mdhess.hessian(mdhess.lennard_jones(cutoff=2.5), R, box=box, format="bsr")
    print(f"N = {len(R)}, k = {args.k}, BSR {B.nnz // 9} blocks")
    plan = jl.check_solver_memory
    rows = []
    for batch in [None] + [int(b) for b in args.batches.split(",")]:
        jl.check_solver_memory = plan if batch is None else (lambda n, columns, kv, reserve=0, shards=1, b=batch: min(b, kv))
        t = time.perf_counter()
        nm = mdhess.normal_modes(B, k=args.k, positions=R, box=box, solver="jax-lobpcg", tol=1e-10)
        dt = time.perf_counter() - t
        rows.append((batch, dt, nm))
    jl.check_solver_memory = plan
    one = rows[0][2]
    print(f"{'':22s} {'seconds':>8s} {'ratio':>6s} {'iterations':>10s} {'products':>9s} {'max rel. diff':>14s}")
    for batch, dt, nm in rows:
        w0, w = one.eigenvalues[3:], nm.eigenvalues[3:]
        diff = float(np.max(np.abs(w - w0) / np.abs(w0)))
        name = "one block" if batch is None else f"batches of {batch} ({nm.info.get('batches', 1)})"
        print(f"{name:22s} {dt:8.1f} {dt / rows[0][1]:6.2f} {nm.info['iterations']:10d} {nm.info['matvecs']:9d} {diff:14.1e}")


if __name__ == "__main__":
    main()

"""Higher-order derivatives: Taylor mode against nested jvp, and contract3 against one H.v.

    python benchmarks/bench_higher.py            # N = 2048 taylor orders 2..12; contract3 at N = 32000
    python benchmarks/bench_higher.py --quick    # smaller sizes (smoke test)

(1) ``mdhess.taylor`` (pair-seeded jet) at orders 2..12 on an LJ fcc crystal (N = 2048, cutoff
    2.5 sigma, rattled), first call (trace + compile + run) and steady state, against nested
    ``jax.jvp`` of the same plain pair energy along the same direction (jitted; cut off when a
    compile passes ``--nested-limit`` seconds: its program grows ~2.5x per order).
(2) ``mdhess.contract3`` at N = 32000 (argon-like LJ fcc, cutoff 2.5 sigma) against one
    ``mdhess.hvp(..., store_blocks=False)`` product (both recompute the per-pair derivatives).
Each measurement runs in its own subprocess (compile caches do not leak between rows).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import best, fcc, run_worker


def _system(n_cells):
    import numpy as np

    R, L = fcc(n_cells, 1.5496, 0.02)
    Z = np.random.default_rng(1).normal(size=R.shape)
    return R, L, Z


def worker(name, n):
    import jax
    import jax.numpy as jnp

    import mdhess
    from mdhess.pair._compute import plain_energy
    from mdhess.pair._prepare import Prepared

    kind, order = name.split(":")
    order = int(order)
    pot = mdhess.lennard_jones(cutoff=2.5, switch=2.0)
    if kind in ("taylor", "nested"):
        R, L, Z = _system(n)
        if kind == "taylor":
            from mdhess.pair._taylor import _taylor_pairs

            t = time.perf_counter()
            mdhess.taylor(pot, R, Z, order, box=L)
            first = time.perf_counter() - t
            call = best(lambda: mdhess.taylor(pot, R, Z, order, box=L), 3)
            args = Prepared(pot, R, L, None, "bench").arrays(jnp.float64)
            Zd = jnp.asarray(Z)
            kernel = best(lambda: _taylor_pairs(*args, Zd, order=order).block_until_ready(), 3)
            return {"first": first, "steady": kernel, "call": call}
        else:
            p = Prepared(pot, R, L, None, "bench")
            args = p.arrays(jnp.float64, pad=False)
            Zd = jnp.asarray(Z)

            def E(t):
                return plain_energy(args[0], args[1] + t * Zd, *args[2:-1])

            g = E
            for _ in range(order):
                g = (lambda h: lambda t: jax.jvp(h, (t,), (1.0,))[1])(g)
            jg = jax.jit(g)
            f = lambda: float(jg(0.0))  # noqa: E731
        t = time.perf_counter()
        f()
        first = time.perf_counter() - t
        return {"first": first, "steady": best(f, 3)}
    R, L, Z = _system(n)
    U = Z
    V = Z[::-1].copy()
    if kind == "contract3":
        f = lambda: mdhess.contract3(pot, R, U, V, box=L).block_until_ready()  # noqa: E731
    else:
        op = mdhess.hvp(pot, R, box=L, store_blocks=False)
        f = lambda: op @ U.ravel()  # noqa: E731
        f = (lambda g: lambda: g().block_until_ready())(f)
    f()
    return {"steady": best(f, 5)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--nested-limit", type=float, default=60.0, help="skip nested jvp orders after a compile this slow (s)")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.n)))
        return
    me = os.path.abspath(__file__)
    cells = 4 if a.quick else 8  # 8^3 * 4 = 2048 atoms (the fcc nearest to the N = 1728)
    big = 6 if a.quick else 20  # 20^3 * 4 = 32000 atoms
    print(f"load {os.getloadavg()[0]:.1f}; taylor at N = {4 * cells**3}, contract3 at N = {4 * big**3}")
    rows, nested_ok = [], True
    for order in (2, 4, 6, 8, 10, 12):
        t = run_worker(me, f"taylor:{order}", cells)
        nst = run_worker(me, f"nested:{order}", cells) if nested_ok else {"error": "skipped"}
        if "first" in nst and nst["first"] > a.nested_limit:
            nested_ok = False
        rows.append((order, t, nst))
        print(f"order {order:2d}: taylor first {t.get('first', float('nan')):.3f} s, kernel {t.get('steady', float('nan')):.4f} s"
              f" (whole call with the pair list {t.get('call', float('nan')):.4f} s)"
              f" | nested jvp first {nst.get('first', float('nan')):.3f} s, steady {nst.get('steady', float('nan')):.4f} s"
              f" {nst.get('error', '')}", flush=True)  # fmt: skip
    base = rows[0][1].get("steady")
    for order, t, _ in rows:
        if base and "steady" in t:
            print(f"taylor order {order} / order 2, kernel: {t['steady'] / base:.2f}x")
    c3 = run_worker(me, "contract3:3", big)
    hv = run_worker(me, "hvp:2", big)
    if "steady" in c3 and "steady" in hv:
        print(f"contract3 {c3['steady']:.4f} s vs hvp (matrix-free) {hv['steady']:.4f} s: {c3['steady'] / hv['steady']:.2f}x")
    else:
        print("contract3/hvp:", c3, hv)


if __name__ == "__main__":
    main()

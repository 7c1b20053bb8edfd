"""Higher-order derivatives: Taylor mode against nested jvp, and contract3 against one H.v.

    python benchmarks/bench_higher.py            # N = 2048 taylor orders 2..12; contract3 at N = 32000
    python benchmarks/bench_higher.py --quick    # smaller sizes (smoke test)
    python benchmarks/bench_higher.py --fc3      # only (3): exact fc3 vs phono3py, 32 and 108 atoms

(1) ``mdhess.taylor`` (pair-seeded jet) at orders 2..12 on an LJ fcc crystal (N = 2048, cutoff
    2.5 sigma, rattled), first call (trace + compile + run) and steady state, against nested
    ``jax.jvp`` of the same plain pair energy along the same direction (jitted; cut off when a
    compile passes ``--nested-limit`` seconds: its program grows ~2.5x per order).
(2) ``mdhess.contract3`` at N = 32000 (argon-like LJ fcc, cutoff 2.5 sigma) against one
    ``mdhess.hvp(..., store_blocks=False)`` product (both recompute the per-pair derivatives).
(3) fc3 of LJ argon (eV, A; cutoff 8.5 A, C4 switch from 7.0 A), conventional fcc a = 5.26 A,
    2x2x2 (32 atoms) and 3x3x3 (108 atoms) supercells: ``mdhess.phono3py.force_constants3``
    against phono3py's displacement route with mdhess forces, whole time: ``Phono3py(...)`` +
    ``generate_displacements`` (symmetry on, d = 0.03 A) + ``mdhess.forces`` on every displaced
    supercell + ``produce_fc3``; both in the full (N, N, N, 3, 3, 3) layout, then both compact
    (first index over ``primitive.p2s_map``: one atom for the fcc primitive cell). First call (trace + compile) and warm
    (best of 3 in the same process), wall and CPU (``time.process_time``, all threads) time;
    the fresh processes alternate exact / phono3py ``--rounds`` times and the best is kept.
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


A_ARGON = 5.26  # A, fcc argon lattice constant (as tests/test_phono3py.py)


def _argon(cells):
    """(LJ argon potential in eV and A with the C4 switch, conventional fcc supercell as PhonopyAtoms)."""
    from ase.build import bulk
    from phonopy.structure.atoms import PhonopyAtoms

    import mdhess

    pot = mdhess.lennard_jones(sigma=3.4, epsilon=0.0104, cutoff=8.5, switch=7.0, smoothness=4)
    uc = bulk("Ar", "fcc", a=A_ARGON, cubic=True)
    unitcell = PhonopyAtoms(symbols=uc.get_chemical_symbols(), cell=uc.cell[:], scaled_positions=uc.get_scaled_positions())
    return pot, unitcell


def _timed(f):
    """(result, wall s, cpu s) of one call; cpu is this process's CPU time (all threads)."""
    w, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - w, time.process_time() - c


def fc3_worker(kind, cells, compact=False, d=0.03):
    """One fresh process: the exact fc3 or phono3py's displacement route, first call and warm;
    full (N, N, N, 3, 3, 3) or compact (n_primitive, N, N, 3, 3, 3) fc3 for both."""
    import warnings

    import numpy as np
    from phono3py import Phono3py

    import mdhess
    from mdhess.phono3py import force_constants3

    pot, unitcell = _argon(cells)
    ph0 = Phono3py(unitcell, supercell_matrix=[cells] * 3, primitive_matrix="F")
    sc, rows = ph0.supercell, (ph0.primitive.p2s_map if compact else None)
    info = {"n_atoms": len(sc)}
    if kind == "fc3exact":
        route = lambda: force_constants3(sc, pot, compact=False if rows is None else rows)  # noqa: E731
    else:

        def route():
            ph = Phono3py(unitcell, supercell_matrix=[cells] * 3, primitive_matrix="F")
            ph.generate_displacements(distance=d)  # symmetry reduction on (phono3py's default)
            scs = ph.supercells_with_displacements
            ph.forces = np.array([np.asarray(mdhess.forces(pot, s.positions, box=s.cell)) for s in scs])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ph.produce_fc3(is_compact_fc=compact)
            info["n_supercells"] = len(scs)
            return ph.fc3

    fc3, info["first"], info["first_cpu"] = _timed(route)
    warm = [_timed(route)[1:] for _ in range(3)]
    info["warm"], info["warm_cpu"] = min(w for w, _ in warm), min(c for _, c in warm)
    if kind == "fc3fd":  # the finite-difference error, against the exact tensor (not timed)
        exact = force_constants3(sc, pot, compact=False if rows is None else rows)
        info["rel_err"] = float(np.abs(fc3 - exact).max() / np.abs(exact).max())
        info["max_fc3"] = float(np.abs(exact).max())
    return info


def fc3_section(me, rounds):
    """(3): alternate fresh exact / phono3py processes, keep the best of each; print a table."""
    print("fc3, LJ argon (eV, A), cutoff 8.5 A, C4 switch from 7.0 A; phono3py d = 0.03 A, symmetry on", flush=True)
    rows = []
    for cells, compact in ((2, 0), (3, 0), (2, 1), (3, 1)):
        got = {"fc3exact": [], "fc3fd": []}
        for r in range(rounds):
            for kind in ("fc3exact", "fc3fd"):
                res = run_worker(me, f"{kind}:{compact}", cells)
                if "error" in res:
                    print(f"  {kind} cells {cells}: {res['error']}", flush=True)
                    continue
                got[kind].append(res)
                print(f"  round {r + 1} {kind} {cells}x{cells}x{cells} {'compact' if compact else 'full'}: "
                      + json.dumps(res), flush=True)  # fmt: skip
        if not (got["fc3exact"] and got["fc3fd"]):
            continue
        keys = ("first", "first_cpu", "warm", "warm_cpu")
        ex = {k: min(x[k] for x in got["fc3exact"]) for k in keys}
        fd = {k: min(x[k] for x in got["fc3fd"]) for k in keys}
        rows.append((f"{got['fc3exact'][0]['n_atoms']} {'compact' if compact else 'full'}", got["fc3fd"][0], ex, fd))
    print("| atoms, fc3 layout | phono3py supercells | route | first call wall | first call CPU | warm wall | warm CPU |"
          " max \\|fc3 - exact\\| / max \\|fc3\\| |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for n, meta, ex, fd in rows:
        print(f"| {n} | - | mdhess exact | {ex['first']:.3g} s | {ex['first_cpu']:.3g} s | {ex['warm']:.3g} s"
              f" | {ex['warm_cpu']:.3g} s | 0 (exact) |")  # fmt: skip
        print(f"| {n} | {meta['n_supercells']} | phono3py + mdhess.forces | {fd['first']:.3g} s | {fd['first_cpu']:.3g} s"
              f" | {fd['warm']:.3g} s | {fd['warm_cpu']:.3g} s | {meta['rel_err']:.2e} |")  # fmt: skip
        print(f"| {n} | | **ratio** phono3py / exact | {fd['first'] / ex['first']:.3g}x | {fd['first_cpu'] / ex['first_cpu']:.3g}x"
              f" | {fd['warm'] / ex['warm']:.3g}x | {fd['warm_cpu'] / ex['warm_cpu']:.3g}x | |")  # fmt: skip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fc3", action="store_true", help="run only (3): exact fc3 vs phono3py")
    ap.add_argument("--rounds", type=int, default=2, help="(3): alternating exact / phono3py process pairs")
    ap.add_argument("--nested-limit", type=float, default=60.0, help="skip nested jvp orders after a compile this slow (s)")
    a = ap.parse_args()
    if a.worker:
        kind, arg = a.worker.split(":")
        print(json.dumps(fc3_worker(kind, a.n, bool(int(arg))) if kind.startswith("fc3") else worker(a.worker, a.n)))
        return
    me = os.path.abspath(__file__)
    if a.fc3:
        fc3_section(me, a.rounds)
        return
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
    fc3_section(me, a.rounds)


if __name__ == "__main__":
    main()

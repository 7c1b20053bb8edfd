"""Elastic constants with the non-affine relaxation: mdhess vs matscipy's get_elastic_constants.

    python benchmarks/bench_elastic.py                 # N = 2000 side by side, N = 32000 mdhess alone
    python benchmarks/bench_elastic.py --sizes 2000    # one size

Structures: the first inherent structure of the bundled 500-atom Kob-Andersen glass
(data/ka500.h5, max |force| 5e-13) replicated periodically: 4x1x1 cells (N = 2000) and 4x4x4
(N = 32000). A replicated minimum is a minimum, and its elastic constants are those of the
500-atom cell (checked below), so every size has an exact reference. Each measurement runs in
its own process (peak RSS per process). "first" is the first call in the process (pair list,
trace, compile); "warm" a second call on the same structure. Wall time and, in brackets, the
process's CPU time (time.process_time, all threads: steadier than wall time on a shared machine).

matscipy: ``PairPotential.get_elastic_constants`` (Born + stress + ``nonaffine_elastic_contribution``:
scipy CG, unpreconditioned, on its sparse Hessian, nine right-hand sides), at its default CG
tolerance (rtol = atol = 1e-5) and at rtol 1e-9; mdhess at its default tol = 1e-10.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import rss_mb, run_worker  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "ka500.h5"
REPS = {2000: (4, 1, 1), 32000: (4, 4, 4)}
KA_SIG = np.array([[1.0, 0.8], [0.8, 0.88]])
KA_EPS = np.array([[1.0, 1.5], [1.5, 0.5]])


def structure(n):
    import mdhess

    with mdhess.read_trajectory(DATA) as t:
        fr = t[0]
    reps = REPS[n]
    L = np.diag(fr.box) if np.ndim(fr.box) == 2 else np.asarray(fr.box)
    shifts = np.stack(np.meshgrid(*[np.arange(k) for k in reps], indexing="ij"), -1).reshape(-1, 3) * L
    R = (fr.positions[None] + shifts[:, None]).reshape(-1, 3)
    return R, L * np.array(reps), np.tile(fr.species, len(shifts))


def reference_500():
    import mdhess

    with mdhess.read_trajectory(DATA) as t:
        fr = t[0]
    return mdhess.elastic_constants(mdhess.load_potential("kob-andersen"), fr.positions, fr.box, species=fr.species).C


def worker(name, n):
    R, box, s = structure(n)
    out = {"n": n}
    if name.startswith("mdhess"):
        import mdhess

        ka = mdhess.load_potential("kob-andersen")
        solver = name.split(":")[1]
        ec = mdhess.elastic_constants  # the lazy import outside the timer, as matscipy's import is
        t, c = time.perf_counter(), time.process_time()
        res = ec(ka, R, box, species=s, solver=solver)
        out["first"], out["first_cpu"] = time.perf_counter() - t, time.process_time() - c
        if n <= 2000:  # the large size once (its compile is a small part)
            t, c = time.perf_counter(), time.process_time()
            res = ec(ka, R, box, species=s, solver=solver)
            out["warm"], out["warm_cpu"] = time.perf_counter() - t, time.process_time() - c
        out.update(C=res.C.tolist(), iterations=res.iterations, residual=res.residual, solver=res.solver)
    else:
        import ase
        from matscipy.calculators.pair_potential import LennardJonesCut, PairPotential
        from matscipy.elasticity import full_3x3x3x3_to_Voigt_6x6

        rtol = float(name.split(":")[1])
        calc = PairPotential(
            {(a + 1, b + 1): LennardJonesCut(KA_EPS[a, b], KA_SIG[a, b], 2.5 * KA_SIG[a, b]) for a, b in [(0, 0), (0, 1), (1, 1)]}
        )
        atoms = ase.Atoms(numbers=s + 1, positions=R, cell=np.diag(box), pbc=True)
        atoms.calc = calc
        cg = {"x0": None, "rtol": rtol, "maxiter": None, "M": None, "callback": None, "atol": rtol if rtol >= 1e-5 else 0.0}
        t, c = time.perf_counter(), time.process_time()
        C = calc.get_elastic_constants(atoms, cg_parameters=cg)
        out["first"], out["first_cpu"] = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()  # a second call: no cache to warm, for symmetry
        C = calc.get_elastic_constants(atoms, cg_parameters=cg)
        out["warm"], out["warm_cpu"] = time.perf_counter() - t, time.process_time() - c
        out["C"] = full_3x3x3x3_to_Voigt_6x6(C, check_symmetry=False).tolist()
    out["rss_mb"] = rss_mb()
    print(json.dumps(out))


def main(sizes):
    C500 = reference_500()
    scale = np.abs(C500).max()
    rows = []
    for n in sizes:
        names = ["mdhess:auto", "mdhess:cg", "matscipy:1e-5", "matscipy:1e-9"] if n <= 2000 else ["mdhess:auto"]
        for name in names:
            r = run_worker(__file__, name, n)
            err = np.abs(np.array(r["C"]) - C500).max() / scale if "C" in r else None
            rows.append((n, name, r, err))
            print(n, name, {k: v for k, v in r.items() if k != "C"}, f"max |C - C_500| / |C| = {err}", flush=True)
    print("\n| N | code | first call, wall (CPU) | warm call, wall (CPU) | peak RSS | max abs(C - C_500) / max abs(C) | notes |")
    print("|---|---|---|---|---|---|---|")
    for n, name, r, err in rows:
        if "error" in r:
            print(f"| {n} | {name} | failed: {r['error']} | | | | |")
            continue
        warm = f"{r['warm']:.2f} s ({r['warm_cpu']:.2f} s)" if "warm" in r else "-"
        note = f"{r.get('solver')}, {r.get('iterations')} CG iterations" if name.startswith("mdhess") else ""
        print(f"| {n} | {name} | {r['first']:.2f} s ({r['first_cpu']:.2f} s) | {warm} | {r['rss_mb']:.0f} MB | {err:.1e} | {note} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000, 32000])
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.n)
    else:
        main(a.sizes)

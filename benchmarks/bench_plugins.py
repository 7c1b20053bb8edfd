"""Plugin benchmarks (phonopy, ASE, jax-md): ratios measured side by side in one run.

    python benchmarks/bench_plugins.py             # all cases (a few minutes on a 2-core CPU)
    python benchmarks/bench_plugins.py --only a    # one case: a, b or c
    python benchmarks/bench_plugins.py --quick     # smaller sizes, for a smoke test
    python benchmarks/bench_plugins.py --only c --large   # adds N=864 to (c): jax.hessian needs ~19 GB

Every measurement runs in its own subprocess (its peak RSS is its own). Times are the best of
repeats after a first call that includes JIT compilation (reported separately where it matters).

(a) phonopy force constants of a P1 supercell (argon fcc, LJ eV/A with the C2 switch from 7.5 to
    8.5 A, so finite differences are smooth; rattled 0.05 A; symmetry off so phonopy displaces
    every atom +-): exact ``mdhess.phonopy.force_constants``
    against phonopy's finite-difference route (generate_displacements(0.01, is_plusminus=True),
    forces of every displaced cell from mdhess.forces, produce_force_constants).
(b) ASE vibrations of LJ clusters (argon, free space): ``mdhess.ase.vibrations`` against ASE's
    ``Vibrations`` (nfree=2, delta=0.01) run on the mdhess calculator.
(c) jax-md: the Hessian of a Lennard-Jones fcc crystal (reduced units, density 1, cutoff 2.5) over
    a jax-md Sparse neighbour list: ``mdhess.plugins.jax_md.hessian`` against what jax-md users do
    today, jit(jax.hessian) of jax-md's own ``lennard_jones_neighbor_list`` energy (r_onset 2.0,
    r_cutoff 2.5: its C1 switch, so the two Hessians differ by the cutoff treatment; timing only),
    and ``mdhess.hessian_of`` (96 tangents per batch) on that same jax-md energy.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import best, fcc, fmt, rss_mb, run_worker


def worker(name, n):
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    out = {}
    if name in ("phonopy_exact", "phonopy_fd"):
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms

        import mdhess
        from mdhess.phonopy import force_constants

        R, L = fcc(n, 5.26, 0.05)
        pot = mdhess.lennard_jones(sigma=3.4, epsilon=0.0104, cutoff=8.5, switch=7.5)
        cell = PhonopyAtoms(symbols=["Ar"] * len(R), positions=R, cell=np.eye(3) * L)
        ph = Phonopy(cell, supercell_matrix=[1, 1, 1], primitive_matrix="P", is_symmetry=False)
        out["n_atoms"] = len(R)
        if name == "phonopy_exact":
            t = time.perf_counter()
            fc = force_constants(pot, ph.supercell)
            out["first_call_s"] = time.perf_counter() - t
            out["time_s"] = best(lambda: force_constants(pot, ph.supercell), 3)
        else:
            mdhess.forces(pot, R, box=L)  # compile outside the timing

            def fd():
                ph.generate_displacements(distance=0.01, is_plusminus=True)
                ph.forces = [
                    np.asarray(mdhess.forces(pot, s.positions, box=s.cell))
                    for s in ph.supercells_with_displacements
                ]
                ph.produce_force_constants()
                return ph.force_constants

            t = time.perf_counter()
            fc_fd = fd()
            out["time_s"] = time.perf_counter() - t
            out["n_force_calls"] = len(ph.supercells_with_displacements)
            fc = force_constants(pot, ph.supercell)
            out["rel_diff_vs_exact"] = float(np.linalg.norm(fc_fd - fc) / np.linalg.norm(fc))
    elif name in ("ase_exact", "ase_fd"):
        import tempfile

        from ase.cluster import Icosahedron
        from ase.optimize import BFGS
        from ase.vibrations import Vibrations

        import mdhess
        from mdhess.ase import MdhessCalculator, vibrations

        pot = mdhess.lennard_jones(sigma=3.4, epsilon=0.0104)
        atoms = Icosahedron("Ar", noshells=n, latticeconstant=2 ** (2 / 3) * 3.4)
        atoms.calc = MdhessCalculator(pot)
        BFGS(atoms, logfile=None).run(fmax=1e-5, steps=2000)
        out["n_atoms"] = len(atoms)
        if name == "ase_exact":
            t = time.perf_counter()
            vibrations(atoms, pot)
            out["first_call_s"] = time.perf_counter() - t
            out["time_s"] = best(lambda: vibrations(atoms, pot), 3)
        else:
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                vib = Vibrations(atoms, name=os.path.join(d, "vib"), delta=0.01, nfree=2)
                vib.run()
                data = vib.get_vibrations()
                out["time_s"] = time.perf_counter() - t
            H = vibrations(atoms, pot).get_hessian_2d()
            out["rel_diff_vs_exact"] = float(np.linalg.norm(data.get_hessian_2d() - H) / np.linalg.norm(H))
    elif name in ("jaxmd_plugin", "jaxmd_jax_hessian", "jaxmd_hessian_of"):
        import jax
        import jax.numpy as jnp

        import mdhess
        from mdhess.plugins import jax_md as mjx

        jax.config.update("jax_numpy_dtype_promotion", "standard")  # jax-md's own code needs it
        from jax_md import energy, partition

        R, L = fcc(n, (4 / 1.0) ** (1 / 3), 0.05)
        out["n_atoms"] = len(R)
        Rj = jnp.asarray(R)
        if name == "jaxmd_plugin":
            pot = mdhess.lennard_jones(cutoff=2.5)
            nbrs = mjx.neighbor_list(pot, L, format="Sparse").allocate(Rj)
            out["baseline_rss_mb"] = rss_mb()
            t = time.perf_counter()
            mjx.hessian(pot, R, nbrs, box=L).block_until_ready()
            out["first_call_s"] = time.perf_counter() - t
            out["time_s"] = best(lambda: mjx.hessian(pot, R, nbrs, box=L).block_until_ready(), 3)
        else:
            disp, _ = mjx.space(L)
            f64 = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731 - jax-md downcasts Python floats
            neighbor_fn, E = energy.lennard_jones_neighbor_list(
                disp,
                f64(L),
                sigma=f64(1.0),
                epsilon=f64(1.0),
                r_onset=f64(2.0),
                r_cutoff=f64(2.5),
                dr_threshold=0.0,
                format=partition.Sparse,
            )
            nbrs = neighbor_fn.allocate(Rj)
            out["baseline_rss_mb"] = rss_mb()
            if name == "jaxmd_jax_hessian":
                f = jax.jit(jax.hessian(lambda x: E(x, neighbor=nbrs)))
                t = time.perf_counter()
                f(Rj).block_until_ready()
                out["first_call_s"] = time.perf_counter() - t
                out["time_s"] = best(lambda: f(Rj).block_until_ready(), 2)
            else:
                t = time.perf_counter()
                mdhess.hessian_of(lambda x: E(x, neighbor=nbrs), R, batch_size=96)
                out["first_call_s"] = time.perf_counter() - t
                out["time_s"] = best(
                    lambda: mdhess.hessian_of(lambda x: E(x, neighbor=nbrs), R, batch_size=96), 2
                )
    else:
        raise SystemExit(f"unknown worker {name}")
    out["peak_rss_mb"] = rss_mb()
    print(json.dumps(out))






def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--only", default="abc")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--large", action="store_true", help="(c) also at N=864 (jax.hessian peaks at ~19 GB)")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.n)
    rows = []
    if "a" in args.only:
        for n in [2] if args.quick else [2, 3, 4]:
            m, ref = run_worker(os.path.abspath(__file__), "phonopy_exact", n), run_worker(os.path.abspath(__file__), "phonopy_fd", n)
            if "error" in m or "error" in ref:
                rows.append(f"| (a) phonopy P1 argon, {4 * n**3} atoms | {m} | {ref} | | |")
                continue
            rows.append(
                f"| (a) phonopy force constants, P1 argon supercell, N={m['n_atoms']} | exact {fmt(m['time_s'])} "
                f"(first call {fmt(m['first_call_s'])}) | finite differences, {ref['n_force_calls']} displaced cells "
                f"{fmt(ref['time_s'])} | **{ref['time_s'] / m['time_s']:.0f}x faster** | FD differs by "
                f"{ref['rel_diff_vs_exact']:.1e} (its O(d^2) error) |"
            )
    if "b" in args.only:
        for n in [3] if args.quick else [3, 4, 5]:
            m, ref = run_worker(os.path.abspath(__file__), "ase_exact", n), run_worker(os.path.abspath(__file__), "ase_fd", n)
            if "error" in m or "error" in ref:
                rows.append(f"| (b) ASE vibrations, {n} shells | {m} | {ref} | | |")
                continue
            rows.append(
                f"| (b) ASE vibrations, LJ{m['n_atoms']} cluster | exact {fmt(m['time_s'])} (first call "
                f"{fmt(m['first_call_s'])}) | ase Vibrations nfree=2, {6 * m['n_atoms']} force calls {fmt(ref['time_s'])} "
                f"| **{ref['time_s'] / m['time_s']:.0f}x faster** | FD differs by {ref['rel_diff_vs_exact']:.1e} |"
            )
    if "c" in args.only:
        for n in [4] if args.quick else [4, 5] + ([6] if args.large else []):
            m, ref, ho = (
                run_worker(os.path.abspath(__file__), "jaxmd_plugin", n),
                run_worker(os.path.abspath(__file__), "jaxmd_jax_hessian", n),
                run_worker(os.path.abspath(__file__), "jaxmd_hessian_of", n),
            )
            if "error" in ref:
                ref_txt = f"jit(jax.hessian) failed: {ref['error']}"
                ratio = "-"
            else:
                ref_txt = (
                    f"jit(jax.hessian) of jax-md's LJ {fmt(ref['time_s'])} (first call {fmt(ref['first_call_s'])}), "
                    f"peak RSS {ref['peak_rss_mb']:.0f} MB"
                )
                ratio = f"**{ref['time_s'] / m['time_s']:.0f}x faster**"
            rows.append(
                f"| (c) jax-md list, LJ fcc N={m.get('n_atoms')}, dense | plugin hessian {fmt(m.get('time_s'))} (first call "
                f"{fmt(m.get('first_call_s'))}), peak RSS {m.get('peak_rss_mb', 0):.0f} MB | {ref_txt} | {ratio} | "
                f"hessian_of of jax-md's LJ (96 tangents/batch) {fmt(ho.get('time_s'))}, peak RSS {ho.get('peak_rss_mb', 0):.0f} MB |"
            )
    print("| case | mdhess | reference | ratio | notes |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()

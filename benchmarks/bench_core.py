"""Core engine benchmarks: ratios measured side by side in one run.

    python benchmarks/bench_core.py            # all cases (several minutes on a 2-core CPU)
    python benchmarks/bench_core.py --only a   # one case: a, b, c or d
    python benchmarks/bench_core.py --quick    # smaller sizes, for a smoke test

Every measurement runs in its own subprocess so that its peak RSS (ru_maxrss) is its own;
jit compile time (first call) is reported separately from the steady state (best of repeats).

(a) phi(r) = r over all pairs, N = 2483, float64, dense, vs numpy.full of the same bytes.
(b) Lennard-Jones, free space, all pairs, N = 500: mdhess dense vs jax.hessian of jax-md's
    lennard_jones_pair (its switch pushed beyond the system, so the energies are identical).
(c) Lennard-Jones argon fcc (a = 5.26 A, sigma 3.4 A, eps 0.0104 eV, cutoff 8.5 A, rattled
    0.05 A), BSR, neighbour list included, vs matscipy get_hessian(format='sparse').
(d) dense and BSR vs jax.hessian of the same mdhess pair energy at small N.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import best, fmt, rss_mb, run_worker
from _harness import fcc as _fcc


def fcc(n_cells, a=5.26, rattle=0.05, seed=0):
    """Argon fcc, (positions, (3,) box)."""
    import numpy as np

    R, L = _fcc(n_cells, a, rattle, seed)
    return R, np.full(3, L)


def cloud(n, density=0.9, seed=0):
    """Random points at reduced density with a minimum separation ~0.8 (jittered lattice)."""
    import numpy as np

    side = int(np.ceil(n ** (1 / 3)))
    spacing = (1.0 / density) ** (1 / 3)
    g = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * spacing
    return g + np.random.default_rng(seed).uniform(-0.05, 0.05, g.shape)


# -- workers (each in a fresh process) ----------------------------------------------------------
def worker(name, n):
    import numpy as np

    out = {}
    if name == "numpy_full":
        out["baseline_rss_mb"] = rss_mb()
        out["time_s"] = best(lambda: np.full((3 * n, 3 * n), 1.0), 5)
    elif name in ("mdhess_dense_r", "mdhess_dense_lj"):
        import jax

        import mdhess

        pot = mdhess.pair_potential(lambda r: r) if name == "mdhess_dense_r" else mdhess.lennard_jones()
        R = np.random.default_rng(0).normal(size=(n, 3)) * 10 if name == "mdhess_dense_r" else cloud(n)
        mdhess.hessian(pot, R[:64]).block_until_ready()  # imports and small-size compile
        out["baseline_rss_mb"] = rss_mb()
        t = time.perf_counter()
        H = mdhess.hessian(pot, R)
        H.block_until_ready()
        out["first_call_s"] = time.perf_counter() - t
        del H

        def run():
            H = mdhess.hessian(pot, R)
            H.block_until_ready()
            del H

        out["time_s"] = best(run, 5)
    elif name == "jax_hessian_jaxmd_lj":
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        from jax_md import energy, space

        disp, _ = space.free()
        E = energy.lennard_jones_pair(disp, sigma=1.0, epsilon=1.0, r_onset=1e3, r_cutoff=1.1e3)
        R = jnp.asarray(cloud(n))
        out["baseline_rss_mb"] = rss_mb()
        f = jax.jit(jax.hessian(E))
        t = time.perf_counter()
        H = f(R).block_until_ready()
        out["first_call_s"] = time.perf_counter() - t
        out["time_s"] = best(lambda: f(R).block_until_ready(), 1)
        import mdhess

        Hm = np.asarray(mdhess.hessian(mdhess.lennard_jones(), np.asarray(R)))
        out["rel_diff_vs_mdhess"] = float(np.linalg.norm(np.asarray(H).reshape(Hm.shape) - Hm) / np.linalg.norm(Hm))
    elif name == "jax_hessian_mdhess_energy":
        import jax
        import jax.numpy as jnp

        import mdhess
        from mdhess.pair._compute import plain_energy
        from mdhess.pair._prepare import Prepared

        R = cloud(n)
        args = Prepared(mdhess.lennard_jones(), R, None, None, "bench").arrays(jnp.float64, pad=False)[:-1]
        out["baseline_rss_mb"] = rss_mb()
        f = jax.jit(jax.hessian(plain_energy, argnums=1))
        t = time.perf_counter()
        f(*args).block_until_ready()
        out["first_call_s"] = time.perf_counter() - t
        out["time_s"] = best(lambda: f(*args).block_until_ready(), 2)
    elif name in ("mdhess_bsr_argon", "mdhess_bsr_lj"):
        import mdhess

        if name == "mdhess_bsr_argon":
            cells = round((n / 4) ** (1 / 3))
            R, box = fcc(cells)
            pot = mdhess.lennard_jones(sigma=3.4, epsilon=0.0104, cutoff=8.5)
        else:
            R, box = cloud(n), None
            pot = mdhess.lennard_jones(cutoff=2.5)
        t = time.perf_counter()
        mdhess.hessian(pot, R, box=box, format="bsr")
        out["first_call_s"] = time.perf_counter() - t
        out["time_s"] = best(lambda: mdhess.hessian(pot, R, box=box, format="bsr"), 3)
        out["nnz_blocks"] = int(mdhess.hessian(pot, R, box=box, format="bsr").nnz // 9)
    elif name == "matscipy_argon":
        import ase
        import matscipy.calculators.pair_potential as pp

        cells = round((n / 4) ** (1 / 3))
        R, box = fcc(cells)
        atoms = ase.Atoms("Ar" * len(R), positions=R, cell=box, pbc=True)
        calc = pp.PairPotential({(18, 18): pp.LennardJonesCut(epsilon=0.0104, sigma=3.4, cutoff=8.5)})
        out["time_s"] = best(lambda: calc.get_hessian(atoms, format="sparse"), 3)
    else:
        raise SystemExit(f"unknown worker {name}")
    out["peak_rss_mb"] = rss_mb()
    print(json.dumps(out))






def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--only", default="abcd")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.n)
    rows = []
    if "a" in args.only:
        n = 800 if args.quick else 2483
        ref = run_worker(os.path.abspath(__file__), "numpy_full", n)
        m = run_worker(os.path.abspath(__file__), "mdhess_dense_r", n)
        out_mb = 9 * n * n * 8 / 2**20
        rows.append(
            f"| (a) phi(r)=r, all pairs, N={n}, float64, dense | mdhess {fmt(m.get('time_s'))} "
            f"(first call {fmt(m.get('first_call_s'))}) | numpy.full same bytes {fmt(ref.get('time_s'))} | "
            f"**{m['time_s'] / ref['time_s']:.2f}x** the write | peak RSS {m['peak_rss_mb']:.0f} MB = baseline "
            f"{m['baseline_rss_mb']:.0f} MB + {(m['peak_rss_mb'] - m['baseline_rss_mb']) / out_mb:.2f} x output ({out_mb:.0f} MB) |"
        )
    if "b" in args.only:
        n = 200 if args.quick else 500
        ref = run_worker(os.path.abspath(__file__), "jax_hessian_jaxmd_lj", n)
        m = run_worker(os.path.abspath(__file__), "mdhess_dense_lj", n)
        if "error" in ref:
            rows.append(f"| (b) LJ all pairs N={n} | mdhess {fmt(m.get('time_s'))} | jax.hessian(jax-md) failed: {ref['error']} | | |")
        else:
            rows.append(
                f"| (b) LJ, free space, all pairs, N={n}, dense | mdhess {fmt(m['time_s'])} (first call "
                f"{fmt(m['first_call_s'])}), peak RSS {m['peak_rss_mb']:.0f} MB | jax.hessian of jax-md "
                f"lennard_jones_pair {fmt(ref['time_s'])} (first call {fmt(ref['first_call_s'])}), peak RSS "
                f"{ref['peak_rss_mb']:.0f} MB | **{ref['time_s'] / m['time_s']:.0f}x faster** steady, "
                f"{ref['first_call_s'] / m['first_call_s']:.0f}x first call | memory "
                f"{m['peak_rss_mb'] / ref['peak_rss_mb']:.3f} of jax.hessian's; Hessians agree to "
                f"{ref['rel_diff_vs_mdhess']:.1e} |"
            )
    if "c" in args.only:
        for n in [2048, 8788] if args.quick else [2048, 8788, 32000]:
            ref = run_worker(os.path.abspath(__file__), "matscipy_argon", n)
            m = run_worker(os.path.abspath(__file__), "mdhess_bsr_argon", n)
            rows.append(
                f"| (c) argon fcc LJ, BSR, N={n} ({m.get('nnz_blocks')} blocks) | mdhess {fmt(m.get('time_s'))} "
                f"(first call {fmt(m.get('first_call_s'))}) | matscipy {fmt(ref.get('time_s'))} | "
                f"**{ref['time_s'] / m['time_s']:.2f}x faster** ({m['time_s'] / ref['time_s']:.2f} of matscipy's time) | neighbour list included |"
            )
    if "d" in args.only:
        for n in [64, 128] if args.quick else [100, 250]:
            ref = run_worker(os.path.abspath(__file__), "jax_hessian_mdhess_energy", n)
            m = run_worker(os.path.abspath(__file__), "mdhess_dense_lj", n)
            rows.append(
                f"| (d) LJ all pairs N={n}, dense | mdhess {fmt(m.get('time_s'))}, {m['peak_rss_mb']:.0f} MB | "
                f"jax.hessian of the same pair energy {fmt(ref.get('time_s'))}, {ref['peak_rss_mb']:.0f} MB | "
                f"**{ref['time_s'] / m['time_s']:.0f}x faster** | first calls {fmt(m['first_call_s'])} vs {fmt(ref['first_call_s'])} |"
            )
    print("| case | mdhess | reference | ratio | notes |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()

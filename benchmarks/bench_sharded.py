"""Strong scaling of the sharded operator (issue 14, deliverable 3) on 1, 2 and 4 virtual CPU
devices, ratios side by side in one run.

Each device count runs in a fresh process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=D JAX_PLATFORMS=cpu`` (the device count is
fixed when JAX starts). Workload: a rattled LJ fcc crystal (reduced units, rc = 2.5, periodic,
float64), ``mdhess.hvp(..., devices=jax.devices())``:

- ``op @ v`` for one vector and for a block of 20 (best of 5 / 3, result on the host);
- for the same 20 columns already in the operator's split layout, ``op.mv_split`` (the halo
  exchange alone: what the JAX LOBPCG's products are), and the halo rows a device receives;
- the lowest 20 modes, ``normal_modes(op, k=20, solver=SOLVER, tol=1e-8)`` on a smaller crystal,
  timed on a second call (the first compiles the products for LOBPCG's block widths). SOLVER
  "lobpcg" (default): the products sharded, the LOBPCG's block algebra on the host;
  "jax-lobpcg": its vectors split by rows across the same devices as well;
- for reference, the plain single-device operator (``devices=None``) in the 1-device process.

The virtual devices share this machine's cores (2 here): the ratios show the overhead of the
sharded program and how much of the cores it uses, not what separate GPUs would give.

Run:  python benchmarks/bench_sharded.py [--cells 15] [--modes-cells 8] [--devices 1 2 4] [--solver jax-lobpcg]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import fcc


def _best(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def worker(cells: int, modes_cells: int, solver: str = "lobpcg") -> dict:
    import jax

    import mdhess

    devs = jax.devices()
    pot = mdhess.lennard_jones(cutoff=2.5)
    R, L = fcc(cells, 1.5874, 0.03)
    v = np.random.default_rng(1).standard_normal(3 * len(R))
    V = np.random.default_rng(2).standard_normal((3 * len(R), 20))
    out = {"devices": len(devs), "n_atoms": len(R)}

    def products(op, tag):
        np.asarray(op @ v), np.asarray(op @ V)  # compile
        out[f"{tag}mv"] = _best(lambda: np.asarray(op @ v), 5)
        out[f"{tag}mm20"] = _best(lambda: np.asarray(op @ V), 3)

    t = time.perf_counter()
    op = mdhess.hvp(pot, R, box=L, devices=devs)
    out["build"] = time.perf_counter() - t
    out["entries_per_device"] = op.entries_per_device.tolist()
    products(op, "")
    if hasattr(op, "mv_split"):  # the split layout: vectors stay split, halo exchange only
        X = op.to_split(V)
        op.mv_split(X).block_until_ready()
        out["split_mm20"] = _best(lambda: op.mv_split(X).block_until_ready(), 3)
        out["halo_rows"], out["rows_per_device"] = op.halo_rows, op.partition.n_loc
    Rm, Lm = fcc(modes_cells, 1.5874, 0.03)
    out["modes_n_atoms"] = len(Rm)
    opm = mdhess.hvp(pot, Rm, box=Lm, devices=devs)
    for key in ("modes20_first", "modes20"):  # the first solve compiles the products' block widths
        t = time.perf_counter()
        m = mdhess.normal_modes(opm, k=20, solver=solver, tol=1e-8)
        out[key] = time.perf_counter() - t
    out["eigenvalues"] = np.asarray(m.eigenvalues).tolist()
    if len(devs) == 1:
        products(mdhess.hvp(pot, R, box=L), "plain_")
        plain = mdhess.hvp(pot, Rm, box=Lm)
        for key in ("plain_modes20_first", "plain_modes20"):
            t = time.perf_counter()
            mdhess.normal_modes(plain, k=20, solver=solver, tol=1e-8)
            out[key] = time.perf_counter() - t
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=15, help="fcc cells per edge for the products (4 n^3 atoms)")
    ap.add_argument("--modes-cells", type=int, default=8, help="fcc cells per edge for the lowest-20 solve")
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--solver", default="lobpcg", choices=["lobpcg", "jax-lobpcg"], help="of the lowest-20 solve")
    ap.add_argument("--worker", action="store_true")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.cells, a.modes_cells, a.solver)))
        return
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    rows = []
    for d in a.devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={d}", JAX_PLATFORMS="cpu")
        cmd = [sys.executable, __file__, "--worker", "--cells", str(a.cells), "--modes-cells", str(a.modes_cells),
               "--solver", a.solver]  # fmt: skip
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode:
            print(f"{d} devices failed:\n{res.stderr[-2000:]}")
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"{d} devices done, load {os.getloadavg()[0]:.1f}", flush=True)
    if not rows:
        return
    base = rows[0]
    w0 = np.asarray(base["eigenvalues"])
    print(f"\nN = {base['n_atoms']} (products), {base['modes_n_atoms']} (lowest 20), LJ fcc rc 2.5, float64")
    print(f"| devices | build | op @ v | op @ V (20 cols) | mv_split (20 cols) | halo rows / own rows | lowest 20 ({a.solver}, tol 1e-8) | speed-up v / V / modes | max rel eig diff vs 1 device |")
    print("|---|---|---|---|---|---|---|---|---|")
    if "plain_mv" in base:
        print(f"| 1, plain operator | - | {base['plain_mv'] * 1e3:.1f} ms | {base['plain_mm20'] * 1e3:.1f} ms | - | - | "
              f"{base['plain_modes20']:.2f} s | - | - |")  # fmt: skip
    for r in rows:
        w = np.asarray(r["eigenvalues"])
        diff = float(np.abs(w - w0).max() / np.abs(w0).max())
        print(
            f"| {r['devices']} | {r['build']:.2f} s | {r['mv'] * 1e3:.1f} ms | {r['mm20'] * 1e3:.1f} ms | "
            + (f"{r['split_mm20'] * 1e3:.1f} ms | {r['halo_rows']} / {r['rows_per_device']} | " if "split_mm20" in r else "- | - | ")
            + f"{r['modes20']:.2f} s | {base['mv'] / r['mv']:.2f} / {base['mm20'] / r['mm20']:.2f} / "
            f"{base['modes20'] / r['modes20']:.2f} | {diff:.1e} |"
        )
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

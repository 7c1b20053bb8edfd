"""GPU targets (the "composable and fast" issue, and issue 14's item 6), in one process on
whatever JAX device is first, within one time budget: one prepared run for a lent GPU machine.

Dense part (this process):
1. Dense float32 N = 10000, phi(r) = r, all pairs: the all-pairs kernel vs the time XLA takes to
   write the same (3N, 3N) float32 array (a jitted fill whose value is an argument, so nothing is
   constant-folded). Target <= 1.5x.
2. The N = 2483 pair Hessian in float32 (jax#787's case): target <= 0.15 ms of device time.
   Timed twice: the compiled kernel on device-resident inputs (what the target is about) and the
   public ``mdhess.hessian`` call (adds host validation, the overlap check and the transfer).

Correctness first: float32 against float64 on the same device (relative Frobenius error; the
float32 rounding of sums over N pairs bounds it near 1e-6) and both layouts against each other.

Scale part (a child process, killed when the budget runs out; each finished step is kept):
3. A Kob-Andersen glass of ~N atoms (default 10^6: the bundled 500-atom glass tiled; density
   1.2, cutoffs 2.5 sigma_ab, float64): ``hessian(format="bsr")`` twice (the first call compiles),
   blocks, peak host memory; checked against central differences of ``mdhess.forces`` along a
   random direction (relative error <= 1e-6: h = 1e-5, truncation ~h^2).
4. Its lowest k modes by ``normal_modes(B, k, solver="jax-lobpcg")`` for each ``--modes`` entry
   (default 20 float64, 20 mixed, 100, 1000), in that order: time, iterations, products,
   converged count; residuals ||H x - lam x|| / |lam| checked with the matrix-free operator
   (``mdhess.hvp(store_blocks=False)``: blocks recomputed by the other kernel, not the BSR).
   A solve whose block of vectors cannot fit runs in batches of modes (the library's choice:
   k = 1000 at N = 10^6 needs ~600 GB as one block); one that cannot fit even so is refused by
   the library (MemoryPlanError) and recorded.
   Moonshot: k = 1000 at N = 10^6 in under 10 minutes.

Run:  python benchmarks/bench_gpu.py [--budget 600] [--n-atoms 1000000] [--modes 20,20m,100,1000]
      python benchmarks/bench_gpu.py --quick      (small sizes: a CPU smoke run, ~1-2 min)
Prints one JSON object (also written to --json FILE as the steps finish); paste the figures into
docs/benchmarks.md with the device name.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# runs from a checkout, mdhess not installed (a lent GPU machine has JAX but no mdhess; its child
# process runs this file too): the checkout first, then this folder for _harness
sys.path[:0] = [str(REPO), os.path.dirname(__file__)]
from _harness import rss_mb  # noqa: E402


def device_time(fn, repeats):
    """Best wall time of ``repeats`` calls of fn() (each blocked until ready), s."""
    import jax

    jax.block_until_ready(fn())  # compile / warm
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return min(ts)


def dense_part(args, out):
    """Sections 1 and 2 (dense float32 and N = 2483), into ``out``."""
    import jax
    import jax.numpy as jnp

    import mdhess
    from mdhess._device import to_device
    from mdhess.pair._layouts import dense_all_pairs, row_block_size
    from mdhess.pair._prepare import cast_potential

    n_big, n_787 = (600, 300) if args.quick else (10000, 2483)
    out["dense_n"], out["n787_n"] = n_big, n_787
    rng = np.random.default_rng(0)
    pot = mdhess.pair_potential(lambda r: r)

    def kernel(n, dtype, component=False):
        R = rng.normal(size=(n, 3)) * 10
        p = cast_potential(pot, dtype)
        Rd, s = to_device(R, dtype), to_device(np.zeros(n, np.int32))
        B = row_block_size(n)
        return R, lambda: dense_all_pairs(p, Rd, s, block=B, component_major=component)

    # -- correctness --------------------------------------------------------------------------
    R, f32 = kernel(n_787, np.float32)
    H32 = np.asarray(f32(), dtype=np.float64)
    H64 = np.asarray(mdhess.hessian(pot, R))
    out["float32_vs_float64_rel"] = float(np.linalg.norm(H32 - H64) / np.linalg.norm(H64))
    Hc = np.asarray(mdhess.hessian(pot, R, layout="component"))
    perm = (3 * np.arange(n_787)[None, :] + np.arange(3)[:, None]).ravel()  # row a*N + i <- 3i + a
    out["component_layout_rel_diff"] = float(np.abs(Hc - H64[np.ix_(perm, perm)]).max() / np.abs(H64).max())
    del H32, H64, Hc
    # the layouts compute the same expressions; a GPU compiler may contract them differently
    ok = out["float32_vs_float64_rel"] < 1e-5 and out["component_layout_rel_diff"] <= 1e-13
    out["correct"] = bool(ok)

    # -- 1. dense float32 N = n_big vs the write floor ----------------------------------------
    n3 = 3 * n_big
    fill = jax.jit(lambda v: jnp.full((n3, n3), v, jnp.float32))
    v = jnp.float32(1.0)
    reps = 3 if args.quick else 10
    out["write_floor_s"] = device_time(lambda: fill(v), reps)
    _, big = kernel(n_big, np.float32)
    out["dense_f32_s"] = device_time(big, reps)
    _, big_c = kernel(n_big, np.float32, component=True)
    out["dense_f32_component_s"] = device_time(big_c, reps)
    out["dense_ratio"] = out["dense_f32_s"] / out["write_floor_s"]
    out["dense_component_ratio"] = out["dense_f32_component_s"] / out["write_floor_s"]
    del big, big_c

    # -- 2. N = 2483 float32 ---------------------------------------------------------------------
    out["n787_kernel_ms"] = 1e3 * device_time(f32, 5 if args.quick else 50)
    R787 = rng.normal(size=(n_787, 3)) * 10
    out["n787_public_call_ms"] = 1e3 * device_time(lambda: mdhess.hessian(pot, R787, dtype="float32"), 5)
    out["targets"] = {
        "dense_ratio_le_1.5": out["dense_ratio"] <= 1.5,
        "n787_kernel_le_0.15ms": out["n787_kernel_ms"] <= 0.15,
    }


# -- the scale part ---------------------------------------------------------------------------------
def tile_counts(n_tiles: float) -> tuple[int, int, int]:
    """Near-cubic (a, b, c) with a b c >= n_tiles, the smallest such product."""
    m = max(1, int(round(n_tiles ** (1 / 3))))
    sides = [x for x in (m - 1, m, m + 1) if x >= 1]
    return min((t for t in itertools.product(sides, repeat=3) if np.prod(t) >= n_tiles), key=np.prod)


def ka_glass(n_target: int):
    """(R, box, species): the bundled 500-atom KA glass (frame 0) tiled to >= n_target atoms."""
    import mdhess

    with mdhess.read_trajectory(REPO / "data" / "ka500.h5") as t:
        f = t[0]
    L = np.diag(f.box)
    counts = tile_counts(n_target / len(f.positions))
    g = np.stack(np.meshgrid(*[np.arange(c) for c in counts], indexing="ij"), -1).reshape(-1, 1, 3)
    R = (f.positions[None] + g * L).reshape(-1, 3)
    species = np.tile(f.species, len(g))
    return R, np.diag(L * np.array(counts)), species


def peak_rss_gb():
    return rss_mb() / 1024.0


def parse_modes(text: str):
    """"20,20m,100" -> [(20, "float64"), (20, "mixed"), (100, "float64")]."""
    runs = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        mixed = item.endswith("m")
        runs.append((int(item.rstrip("m")), "mixed" if mixed else "float64"))
    return runs


def scale_worker(args):
    """Section 3 and 4 in this (child) process; one JSON line per finished step to args.json."""
    import jax

    import mdhess

    def emit(rec):
        rec["load"] = round(os.getloadavg()[0], 2)
        with open(args.json, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    R, box, species = ka_glass(args.n_atoms)
    n = len(R)
    pot = mdhess.load_potential("kob-andersen")
    emit({"step": "system", "n_atoms": n, "box": np.diag(box).tolist(), "device": str(jax.devices()[0])})
    times = []
    for _ in range(2):
        t = time.perf_counter()
        B = mdhess.hessian(pot, R, box=box, species=species, format="bsr")
        times.append(time.perf_counter() - t)
    emit({
        "step": "bsr", "first_call_s": times[0], "second_call_s": times[1], "blocks": B.nnz // 9,
        "blocks_gb": B.data.nbytes / 2**30, "peak_rss_gb": peak_rss_gb(),
    })  # fmt: skip
    rng = np.random.default_rng(0)
    v = rng.normal(size=R.shape)
    h = 1e-5
    t = time.perf_counter()
    fd = (mdhess.forces(pot, R - h * v, box=box, species=species) - mdhess.forces(pot, R + h * v, box=box, species=species))
    fd = np.asarray(fd).reshape(-1) / (2 * h)
    Bv = B @ v.reshape(-1)
    rel = float(np.linalg.norm(Bv - fd) / np.linalg.norm(Bv))
    emit({"step": "bsr_check", "fd_rel": rel, "ok": rel <= 1e-6, "seconds": time.perf_counter() - t})
    op = mdhess.hvp(pot, R, box=box, species=species, store_blocks=False)
    for k, precision in parse_modes(args.modes):
        label = f"modes k={k} {precision}"
        t = time.perf_counter()
        try:
            nm = mdhess.normal_modes(B, k=k, positions=R, box=box, solver="jax-lobpcg", precision=precision)
        except mdhess.MemoryPlanError as exc:
            emit({"step": label, "refused": " ".join(str(exc).split()), "seconds": time.perf_counter() - t})
            continue
        dt = time.perf_counter() - t
        w = np.asarray(nm.eigenvalues)
        X = np.asarray(nm.vectors)
        X = X.reshape(X.shape[0], -1).T if X.ndim == 3 else X
        if X.shape[0] != 3 * n:
            X = X.T
        res = np.empty(len(w))
        for a in range(0, len(w), 100):  # the residuals by the matrix-free operator, 100 at a time
            HX = np.asarray(op @ X[:, a : a + 100])
            res[a : a + 100] = np.linalg.norm(HX - X[:, a : a + 100] * w[None, a : a + 100], axis=0)
        nz = np.abs(w) > 1e-8 * np.abs(w).max()
        i = nm.info
        emit({
            "step": label, "seconds": dt, "iterations": i.get("iterations"), "products": i.get("matvecs"),
            "converged": i.get("converged"), "product": i.get("product"), "precision": i.get("precision"),
            "batches": i.get("batches", 1), "batch": i.get("batch", k),
            "iterations_float32": i.get("iterations_float32"), "lowest": w[:5].tolist(), "highest": float(w.max()),
            "max_rel_residual": float(np.max(res[nz] / np.abs(w[nz]))), "peak_rss_gb": peak_rss_gb(),
        })  # fmt: skip
        del nm, X


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (CPU smoke run)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 600; --quick 240)")
    ap.add_argument("--n-atoms", type=int, default=None, help="atoms of the scale part (default 10^6; --quick 4000)")
    ap.add_argument("--modes", default=None, help="k of each solve, 'm' for precision='mixed' (default 20,20m,100,1000)")
    ap.add_argument("--skip-dense", action="store_true", help="the scale part only")
    ap.add_argument("--skip-scale", action="store_true", help="the dense part only")
    ap.add_argument("--json", default=None, help="also write the result here (and the scale steps as they finish)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.n_atoms is None:
        args.n_atoms = 4000 if args.quick else 1_000_000
    if args.modes is None:
        args.modes = "10,10m,30" if args.quick else "20,20m,100,1000"
    if args.worker == "scale":
        return scale_worker(args)
    t0 = time.perf_counter()
    budget = args.budget if args.budget is not None else (240.0 if args.quick else 600.0)
    # on a GPU JAX takes 75% of the device's memory at start-up unless told otherwise; this process
    # and the scale part's child share one device, so each takes only what it uses (inherited)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    dev = jax.devices()[0]
    out = {"device": f"{dev.platform}: {dev.device_kind}", "jax": jax.__version__, "load": os.getloadavg(),
           "budget_s": budget}  # fmt: skip
    if not args.skip_dense:
        dense_part(args, out)
        out["dense_part_s"] = time.perf_counter() - t0
    if not args.skip_scale:
        lines = Path(args.json + ".steps") if args.json else Path(f"/tmp/bench_gpu_steps_{os.getpid()}.jsonl")
        lines.unlink(missing_ok=True)
        site = ["-S"] if sys.flags.no_site else []  # the child runs as this process does
        cmd = [sys.executable, *site, __file__, "--worker", "scale", "--n-atoms", str(args.n_atoms), "--modes", args.modes,
               "--json", str(lines)]  # fmt: skip
        left = budget - (time.perf_counter() - t0) - 10.0
        child = subprocess.Popen(cmd)
        try:
            out["scale_exit"] = child.wait(timeout=max(left, 1.0))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            out["scale_exit"] = f"stopped at the budget ({budget:.0f} s in all); the steps below finished"
        steps = [json.loads(x) for x in lines.read_text().splitlines()] if lines.exists() else []
        out["scale"] = steps
        solved = [s for s in steps if s["step"] == "modes k=1000 float64" and "seconds" in s and "refused" not in s]
        out["targets"] = dict(out.get("targets", {}))
        out["targets"]["bsr_fd_check"] = any(s["step"] == "bsr_check" and s["ok"] for s in steps)
        out["targets"]["moonshot_1000_modes_1e6_le_600s"] = bool(
            solved and args.n_atoms >= 1_000_000 and solved[0]["seconds"] <= 600
        )
    out["total_s"] = time.perf_counter() - t0
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()

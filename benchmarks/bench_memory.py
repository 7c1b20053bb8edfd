"""Peak memory of BSR assembly: (peak RSS - baseline) / output bytes, one subprocess per size.

    python benchmarks/bench_memory.py                      # N = 32k, 108k, 256k argon fcc, + matscipy
    python benchmarks/bench_memory.py --ka                 # also the 10^6-particle Kob-Andersen glass
    python benchmarks/bench_memory.py --sizes --ka --ka-reps 4 5 5   # a 50,000-particle KA glass only
    python benchmarks/bench_memory.py --src /tmp/before    # measure another checkout of mdhess

Each size runs in a fresh process: imports, then a warm-up ``hessian(format="bsr")`` on a tiny
system (compiles, allocator pools), then the baseline is that process's peak RSS so far
(ru_maxrss, inputs included); one call at the full size follows and its peak RSS is read
again. "output" is the returned matrix's data + indices + indptr bytes. The first call's time
includes compiling the kernel for the large size; "second" is a repeat in the same process.
A sha256 of (indptr, indices, data) lets two checkouts be compared bit for bit.

Systems: (c) of bench_core.py, Lennard-Jones argon fcc (a = 5.26 A, sigma 3.4 A, eps 0.0104 eV,
cutoff 8.5 A = 2.5 sigma, rattled 0.05 A), periodic; and data/ka500.h5's first frame (a
Kob-Andersen 80:20 glass at density 1.2, kob-andersen potential) replicated 10 x 10 x 20
(10^6 particles). matscipy: ``PairPotential(LennardJonesCut).get_hessian(atoms, "sparse")``.
"""

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import fcc as _fcc
from _harness import rss_mb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def argon(n_cells):
    import numpy as np

    R, L = _fcc(n_cells, 5.26, 0.05, 0)
    return R, np.full(3, L)


def ka_glass(reps=(10, 10, 20)):
    """data/ka500.h5 frame 0 replicated ``reps`` times: (positions, (3,) box, species)."""
    import numpy as np

    import mdhess.io

    f = mdhess.io.read_trajectory(os.path.join(ROOT, "data", "ka500.h5"))[0]
    L = np.diag(f.box)
    g = np.stack(np.meshgrid(*[np.arange(r) for r in reps], indexing="ij"), -1).reshape(-1, 1, 3)
    R = (f.positions[None] + g * L).reshape(-1, 3)
    s = np.tile(f.species, len(g))
    return R, L * np.array(reps), s


def vm_rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def worker(kind, n, with_matscipy, reps=(10, 10, 20)):
    import numpy as np

    import mdhess

    if kind == "lj":
        pot = mdhess.lennard_jones(sigma=3.4, epsilon=0.0104, cutoff=8.5)
        R, box = argon(round((n / 4) ** (1 / 3)))
        s = None
        mdhess.hessian(pot, *argon(3)[:1], box=argon(3)[1], format="bsr")  # warm-up, N = 108
    else:
        pot = mdhess.load_potential("kob-andersen")
        R, box, s = ka_glass(reps)
        R0, box0, s0 = ka_glass((1, 1, 1))
        mdhess.hessian(pot, R0, box=box0, species=s0, format="bsr")  # warm-up, N = 500
    gc.collect()
    out = {"kind": kind, "n": len(R), "mdhess": os.path.dirname(mdhess.__file__), "baseline_mb": rss_mb()}
    t = time.perf_counter()
    M = mdhess.hessian(pot, R, box=box, species=s, format="bsr")
    out["first_s"] = time.perf_counter() - t
    out["peak_mb"] = rss_mb()
    out["rss_after_mb"] = vm_rss_mb()
    out_bytes = M.data.nbytes + M.indices.nbytes + M.indptr.nbytes
    out["output_mb"] = out_bytes / 2**20
    out["ratio"] = (out["peak_mb"] - out["baseline_mb"]) / out["output_mb"]
    out["nnz_blocks"] = int(M.indices.shape[0])
    h = hashlib.sha256()
    for a in (M.indptr.astype(np.int64), M.indices.astype(np.int64), M.data):
        h.update(np.ascontiguousarray(a).tobytes())
    out["sha256"] = h.hexdigest()[:16]
    n_pairs = (out["nnz_blocks"] - len(R)) // 2
    try:
        plan = mdhess.estimate_memory(len(R), n_pairs, format="bsr")
        out["plan_mb"] = plan.total_bytes / 2**20
    except Exception as exc:  # noqa: BLE001 - an older checkout
        out["plan_error"] = str(exc)[:100]
    del M
    gc.collect()
    if kind == "lj" and with_matscipy:
        t = time.perf_counter()
        mdhess.hessian(pot, R, box=box, format="bsr")
        out["second_s"] = time.perf_counter() - t
        import ase
        import matscipy.calculators.pair_potential as pp

        atoms = ase.Atoms("Ar" * len(R), positions=R, cell=box, pbc=True)
        calc = pp.PairPotential({(18, 18): pp.LennardJonesCut(epsilon=0.0104, sigma=3.4, cutoff=8.5)})
        t = time.perf_counter()
        calc.get_hessian(atoms, format="sparse")
        out["matscipy_s"] = time.perf_counter() - t
    print(json.dumps(out))


def available_gb():
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def run(kind, n, src, with_matscipy, ka_reps=(10, 10, 20)):
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.path.abspath(src) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--n", str(n), "--ka-reps", *map(str, ka_reps)]
    if with_matscipy:
        cmd.append("--matscipy")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        err = res.stderr.strip()
        return {"kind": kind, "n": n, "error": err.splitlines()[-1] if err else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int)
    ap.add_argument("--sizes", type=int, nargs="*", default=[32000, 108000, 256000])
    ap.add_argument("--matscipy", action="store_true", help="(worker) also time matscipy")
    ap.add_argument("--matscipy-max", type=int, default=108000, help="time matscipy up to this N")
    ap.add_argument("--ka", action="store_true", help="also the 10^6-particle Kob-Andersen glass")
    ap.add_argument("--ka-min-free-gb", type=float, default=18.0)
    ap.add_argument("--ka-reps", type=int, nargs=3, default=[10, 10, 20], help="copies of ka500 per axis (10^6: 10 10 20)")
    ap.add_argument("--src", help="checkout whose mdhess to measure (put first on PYTHONPATH)")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.matscipy, tuple(args.ka_reps))
        return
    import numpy as np

    rows = [run("lj", n, args.src, n <= args.matscipy_max) for n in args.sizes]
    if args.ka:
        free = available_gb()
        if free >= args.ka_min_free_gb:
            rows.append(run("ka", 500 * int(np.prod(args.ka_reps)), args.src, False, args.ka_reps))
        else:
            rows.append({"kind": "ka", "n": 10**6, "error": f"skipped: {free:.1f} GB available < {args.ka_min_free_gb} GB"})
    print("| system | N | blocks | output | baseline | peak RSS | (peak - baseline) / output | plan | first call | second | matscipy | sha256 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = "argon fcc" if r["kind"] == "lj" else "KA glass"
        if "error" in r:
            print(f"| {name} | {r['n']} | {r['error']} |")
            continue

        def g(k, unit=" s", f="{:.3g}"):
            return "-" if r.get(k) is None else f.format(r[k]) + unit

        print(
            f"| {name} | {r['n']} | {r['nnz_blocks']} | {g('output_mb', ' MB', '{:.0f}')} | "
            f"{g('baseline_mb', ' MB', '{:.0f}')} | {g('peak_mb', ' MB', '{:.0f}')} | **{r['ratio']:.2f}** | "
            f"{g('plan_mb', ' MB', '{:.0f}')} | {g('first_s')} | {g('second_s')} | {g('matscipy_s')} | {r['sha256']} |"
        )
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()

"""Shared pieces of the side-by-side benchmark scripts: best-of timing, per-process peak RSS,
one subprocess per measurement, and the rattled fcc crystal they use."""

import json
import resource
import subprocess
import sys
import time


def rss_mb():
    """Peak resident set size of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best(fn, repeats=3):
    """Best wall time of ``repeats`` calls, s."""
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def fcc(n_cells, a, rattle, seed=0):
    """(positions, edge length) of an n_cells^3 fcc crystal, lattice constant a, Gaussian rattle."""
    import numpy as np

    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = (g + basis[None]).reshape(-1, 3) * a
    return R + np.random.default_rng(seed).normal(scale=rattle, size=R.shape), n_cells * a


def run_worker(script, name, n):
    """Run ``script --worker name --n n`` in a fresh process; its last stdout line is JSON."""
    res = subprocess.run([sys.executable, script, "--worker", name, "--n", str(n)], capture_output=True, text=True)
    if res.returncode != 0:
        err = res.stderr.strip()
        return {"error": err.splitlines()[-1] if err else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def fmt(x, unit="s"):
    return "-" if x is None else f"{x:.3g} {unit}"

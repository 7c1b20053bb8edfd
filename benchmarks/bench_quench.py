"""Quench (energy minimisation) of the bundled 500-atom Kob-Andersen glass, side by side:

- ``mdhess.minimize`` (jax-md's FIRE inside one jitted ``lax.while_loop`` per 1000 steps),
- a plain hand-written jax-md FIRE loop as a user writes it (``fire_descent`` on the jax-md
  plugin's ``energy_fn``, one jitted step per Python iteration, the max force checked each step),
  with the same FIRE parameters,
- scipy L-BFGS-B (``mdhess.minimize(method="lbfgs")``),

each from frame 0 of data/ka500.h5 with the C2-switched KA potential (switch from 2.0 sigma),
fmax 1e-10 (L-BFGS: what it reaches). Wall times include compilation (one fresh process each).

    python benchmarks/bench_quench.py
"""

import argparse
import json
import pathlib
import sys
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _harness import rss_mb, run_worker  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "ka500.h5"
FMAX = 1e-10


def _system():
    import numpy as np

    import mdhess

    with mdhess.read_trajectory(DATA) as t:
        fr = t[0]
    sig = np.array([[1.0, 0.8], [0.8, 0.88]])
    eps = np.array([[1.0, 1.5], [1.5, 0.5]])
    pot = mdhess.lennard_jones(sigma=sig, epsilon=eps, cutoff=2.5 * sig, switch=2.0 * sig)
    return pot, fr


def worker(name):
    import numpy as np

    import mdhess

    pot, fr = _system()
    warnings.simplefilter("ignore", RuntimeWarning)
    t0 = time.perf_counter()
    if name in ("fire", "lbfgs"):
        r = mdhess.minimize(pot, fr.positions, box=fr.box, species=fr.species, method=name, fmax=FMAX)
        out = {"steps": r.iterations, "max_force": r.max_force, "energy": r.energy}
    else:  # the hand-written loop
        import jax

        from mdhess.pair._minimize import DT_MAX_FACTOR, _step_size, cached_forces_fn
        from mdhess.plugins import jax_md as mjm

        with jax.numpy_dtype_promotion("standard"):
            import jax_md

            E = mjm.energy_fn(pot, box=fr.box, species=fr.species)
            R = jax.numpy.asarray(fr.positions)
            dt_max = _step_size(cached_forces_fn(pot, fr.box, fr.species, R.shape[0]), R)  # the same steps
            init, apply = jax_md.minimize.fire_descent(
                E, lambda x, dx, **kw: x + dx, dt_start=dt_max / DT_MAX_FACTOR, dt_max=dt_max
            )
            apply = jax.jit(apply)
            state = init(R)
            steps = 0
            while steps < 200_000:
                state = apply(state)
                steps += 1
                fm = float(np.sqrt(np.max(np.sum(np.asarray(state.force) ** 2, axis=1))))
                if fm <= FMAX:
                    break
        e = mdhess.energy(pot, np.asarray(state.position), box=fr.box, species=fr.species)
        out = {"steps": steps, "max_force": fm, "energy": float(e)}
    out.update(seconds=time.perf_counter() - t0, rss_mb=rss_mb())
    print(json.dumps(out))


def main():
    rows = {name: run_worker(__file__, name, 500) for name in ("fire", "handwritten", "lbfgs")}
    print("| method (500-atom KA glass, C2 switch, fmax 1e-10) | wall time | steps | final max force | energy |")
    print("|---|---|---|---|---|")
    for name, label in (("fire", "`mdhess.minimize` (FIRE, jitted while_loop)"),
                        ("handwritten", "hand-written jax-md FIRE loop (one jitted step per iteration)"),
                        ("lbfgs", "`mdhess.minimize(method=\"lbfgs\")` (scipy L-BFGS-B)")):  # fmt: skip
        r = rows[name]
        if "error" in r:
            print(f"| {label} | error: {r['error']} | | | |")
            continue
        print(f"| {label} | {r['seconds']:.3g} s | {r['steps']} | {r['max_force']:.2g} | {r['energy']:.10f} |")
    if "seconds" in rows["fire"] and "seconds" in rows["handwritten"]:
        print(f"\nhand-written / mdhess.minimize: {rows['handwritten']['seconds'] / rows['fire']['seconds']:.2f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    worker(a.worker) if a.worker else main()

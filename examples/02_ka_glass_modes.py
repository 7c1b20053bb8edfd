"""Example 2: a Kob-Andersen glass quenched with jax-md's FIRE, then its lowest normal modes.

    python examples/02_ka_glass_modes.py [--out out/]

500 atoms (400 A + 100 B) at number density 1.2 (reduced LJ units), placed at random: the
"infinitely hot liquid". jax-md's FIRE minimiser runs on mdhess energies (``mdhess.energy_fn``)
with a jax-md neighbour list from ``mdhess.plugins.jax_md`` -- first harmonic soft spheres to
remove overlaps, then the Kob-Andersen potential -- down to an inherent structure (a glass).
The Hessian is assembled from the same jax-md list, and ``mdhess.normal_modes`` gives the
lowest 20 vibrational modes with their participation ratios (low values: quasi-localised
modes, a hallmark of glasses) and the full vibrational density of states (a PNG in --out).

Checks: the jax-md-list Hessian equals mdhess's own; exactly 3 zero modes (translations) and no
imaginary ones (a true minimum); H e = lambda e for the lowest mode against central finite
differences of the forces. ~30 s on a 2-core CPU.
"""

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import mdhess
from mdhess.plugins import jax_md as mjx

N_A, N_B, DENSITY, SEED = 400, 100, 1.2, 7

with jax.numpy_dtype_promotion("standard"):  # jax-md's import-time code needs it
    from jax_md import minimize


def fire_minimise(pot, R, L, species, *, fmax, chunk, max_chunks, dt_max):
    """jax-md FIRE on the mdhess energy with a jax-md neighbour list, in jitted chunks of steps."""
    E = mdhess.energy_fn(pot, box=L, species=species)
    _, shift = mjx.space(L)
    neighbor_fn = mjx.neighbor_list(pot, L, dr_threshold=0.3, format="OrderedSparse", capacity_multiplier=1.5)
    init, apply = minimize.fire_descent(E, shift, dt_start=0.1 * dt_max, dt_max=dt_max)
    nbrs = neighbor_fn.allocate(jnp.asarray(R))
    state = init(jnp.asarray(R), neighbor=nbrs)

    @jax.jit
    def run(state, nbrs):
        def step(k, carry):
            st, nb = carry
            nb = nb.update(st.position)
            return apply(st, neighbor=nb), nb

        return jax.lax.fori_loop(0, chunk, step, (state, nbrs))

    for c in range(max_chunks):
        state, new = run(state, nbrs)
        if bool(new.did_buffer_overflow):  # overflow travels out as data: reallocate and redo the chunk
            nbrs = neighbor_fn.allocate(state.position)
            continue
        nbrs = new
        f = float(jnp.abs(state.force).max())
        if f < fmax:
            break
    return np.asarray(state.position), f, (c + 1) * chunk, nbrs


def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    n = N_A + N_B
    L = (n / DENSITY) ** (1 / 3)
    species = np.array([0] * N_A + [1] * N_B, dtype=np.int32)
    R = rng.uniform(0, L, (n, 3))
    ka = mdhess.load_potential("kob-andersen")  # species 0 = A, 1 = B; shifted cut at 2.5 sigma_ab

    t0 = time.perf_counter()
    with jax.numpy_dtype_promotion("standard"):
        # 1. overlaps out: harmonic soft spheres with contact at sigma_ab (bounded forces)
        soft = mdhess.soft_sphere(sigma=np.asarray(ka.params["sigma"]), epsilon=10.0, alpha=2.0)
        R, f, steps1, _ = fire_minimise(soft, R, L, species, fmax=1e-3, chunk=500, max_chunks=4, dt_max=0.05)
        # 2. the Kob-Andersen inherent structure
        R, f, steps2, nbrs = fire_minimise(
            ka, R, L, species, fmax=1e-9, chunk=2000, max_chunks=15, dt_max=0.01
        )
    t_fire = time.perf_counter() - t0
    e = mdhess.energy(ka, R, box=L, species=species) / n
    print(
        f"FIRE (jax-md, mdhess energy, jax-md neighbour list): {steps1} soft-sphere + {steps2} KA steps in "
        f"{t_fire:.1f} s; energy {e:.5f} eps/atom, max |F| = {f:.1e}"
    )
    assert f < 1e-6, "FIRE did not reach a minimum"

    # the Hessian from the jax-md list, and from mdhess's own list
    t = time.perf_counter()
    H = mjx.hessian(ka, R, nbrs, box=L, species=species, format="bsr")
    t_h = time.perf_counter() - t
    H_own = mdhess.hessian(ka, R, box=L, species=species, format="bsr")
    diff = abs(H - H_own).max() / abs(H_own).max()
    print(
        f"Hessian from the jax-md list: {H.shape}, {H.nnz // 9} blocks, {t_h:.2f} s; vs mdhess's own list: {diff:.1e}"
    )
    assert diff <= 1e-13

    modes = mdhess.normal_modes(H, k=3 * n, units="lj", box=L, positions=R)  # all 1500 modes, dense eigh
    print(modes.summary())
    assert modes.n_zero == 3 and modes.n_imaginary == 0, (
        "an inherent structure has 3 zero modes and no imaginary one"
    )

    nz = np.flatnonzero(~modes.zero_mask)
    low = nz[:20]
    pr = modes.participation_ratio
    print(" mode   omega (1/tau)   participation ratio")
    for m in low:
        print(f" {m:4d}   {modes.omega[m]:12.5f}   {pr[m]:8.3f}")
    print(
        f"median participation ratio of all modes: {np.median(pr[nz]):.3f}; lowest 20: "
        f"{np.median(pr[low]):.3f} (quasi-localised modes have small ratios)"
    )

    # H e = lambda e for the lowest mode, against central differences of the forces (unit masses)
    e0 = modes.vectors[:, low[0]]
    h = 1e-5
    Fp = np.asarray(mdhess.forces(ka, R + h * e0.reshape(n, 3), box=L, species=species)).ravel()
    Fm = np.asarray(mdhess.forces(ka, R - h * e0.reshape(n, 3), box=L, species=species)).ravel()
    He_fd = -(Fp - Fm) / (2 * h)
    err = np.linalg.norm(He_fd - modes.eigenvalues[low[0]] * e0) / np.linalg.norm(He_fd)
    print(f"lowest mode: |H e - lambda e| / |H e| from finite differences of forces = {err:.1e}")
    # error model: truncation h^2 |F'''| ~ 1e-10 and rounding eps |F| / h ~ 1e-11, against |H e| ~ lambda
    assert err < 1e-4

    path = modes.plot_dos(out / "ka_glass_dos.png", bins=60)
    np.savetxt(
        out / "ka_glass_lowest_modes.txt",
        np.column_stack([modes.omega[low], pr[low]]),
        header="omega_per_tau participation_ratio (lowest 20 vibrational modes)",
    )
    print(f"wrote {path}")
    print("all checks passed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out/)")
    main(ap.parse_args().out)

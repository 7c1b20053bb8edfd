"""Regenerate data/: a 10-frame, 500-atom Kob-Andersen glass trajectory in H5MD and MDTraj layouts.

    python examples/make_data.py            # writes data/ka500.h5 (H5MD 1.1) and data/ka500_mdtraj.h5

Recipe (deterministic: fixed seeds, float64, mdhess's own energy and forces):
1. 400 A + 100 B atoms at random in a periodic cube at number density 1.2 (L = 7.469).
2. Overlaps removed with harmonic soft spheres (contact at 0.9 sigma_ab), then the
   Kob-Andersen energy minimised (L-BFGS).
3. Langevin dynamics at T = 0.5 (BAOAB, dt = 0.005, friction 1), 400 steps to settle, then a
   snapshot every 100 steps.
4. Each snapshot minimised to its inherent structure: L-BFGS to max |force| 1e-4, then Newton
   steps with mdhess's exact Hessian to below 1e-8 (L-BFGS alone stalls near 1e-6, where
   float64 energies stop resolving the line search). The frames are
   energy minima of a quickly quenched glass, so their Hessians have 3 zero modes (translations)
   and no negative ones, the usual starting point for normal-mode analysis of glasses.

The minimiser and the MD use a jitted all-pairs copy of the Kob-Andersen energy (written
out here, cheap per step); the final Newton polish uses mdhess, so the frames are minima of
``mdhess.load_potential("kob-andersen")``. Lengths are in reduced units (sigma_AA = 1). The MDTraj copy stores the same numbers (float32)
in MDTraj's "nanometers" dataset; mdhess takes lengths as they are for reduced-unit ("lj")
potentials. Runs in under 3 minutes on a busy 2-core CPU (measured: 169 s at load average 6).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.optimize

import mdhess
from mdhess.io import write_h5md, write_mdtraj

N_A, N_B, DENSITY, SEED = 400, 100, 1.2, 20240
T, DT, GAMMA = 0.5, 0.005, 1.0
SETTLE, EVERY, N_FRAMES = 400, 100, 10


def ka_energy_fn(box):
    """Jitted Kob-Andersen energy, all pairs with the minimum image (the cutoff 2.5 < L/2), written
    out independently of mdhess so that the thousands of minimiser and MD steps are cheap; the
    minima are then polished with mdhess's own forces and Hessian (``newton_polish``)."""
    import jax
    import jax.numpy as jnp

    sig = jnp.array([[1.0, 0.8], [0.8, 0.88]])
    eps = jnp.array([[1.0, 1.5], [1.5, 0.5]])
    L = jnp.asarray(box)

    def energy(R, species):
        n = R.shape[0]
        d = R[:, None, :] - R[None, :, :]
        d = d - L * jnp.round(d / L)
        r2 = jnp.sum(d * d, -1) + jnp.eye(n)  # no self pair: r2 = 1 on the diagonal, masked below
        s, e = sig[species[:, None], species[None, :]], eps[species[:, None], species[None, :]]
        rc2 = (2.5 * s) ** 2
        x6 = (s * s / r2) ** 3
        xc6 = (1.0 / 2.5) ** 6
        phi = 4 * e * (x6 * x6 - x6) - 4 * e * (xc6 * xc6 - xc6)
        mask = (r2 < rc2) & ~jnp.eye(n, dtype=bool)
        return 0.5 * jnp.sum(jnp.where(mask, phi, 0.0))

    return jax.jit(jax.value_and_grad(energy)), jax.jit(jax.grad(energy))


def lbfgs(value_and_grad, R, species, gtol):
    """scipy L-BFGS on the jitted energy; stops at max |force| <= gtol or when the energy stops
    decreasing in float64."""
    shape = R.shape

    def fun(x):
        e, g = value_and_grad(x.reshape(shape), species)
        return float(e), np.asarray(g).ravel()

    res = scipy.optimize.minimize(
        fun, R.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": 50000, "gtol": gtol, "ftol": 0.0, "maxcor": 30}
    )
    return res.x.reshape(shape)


def newton_polish(pot, R, box, species, steps=4):
    """Newton steps with mdhess's exact forces and Hessian: (H + T T^T) dx = F, with T the three
    translations (H's null space; the forces sum to zero, so this is the Newton step)."""
    n = R.shape[0]
    T = np.kron(np.ones((n, 1)), np.eye(3)) / np.sqrt(n)
    for _ in range(steps):
        F = np.asarray(mdhess.forces(pot, R, box=box, species=species)).ravel()
        if np.abs(F).max() < 1e-11:
            break
        H = np.asarray(mdhess.hessian(pot, R, box=box, species=species))
        dx = scipy.linalg.solve(H + T @ T.T, F, assume_a="pos")
        R = R + dx.reshape(n, 3)
    return R, float(np.abs(np.asarray(mdhess.forces(pot, R, box=box, species=species))).max())


def generate():
    rng = np.random.default_rng(SEED)
    n = N_A + N_B
    L = (n / DENSITY) ** (1.0 / 3.0)
    box = np.full(3, L)
    species = np.zeros(n, np.int32)
    species[N_A:] = 1
    value_and_grad, grad = ka_energy_fn(box)
    ka = mdhess.load_potential("kob-andersen")
    # random start: push overlapping atoms apart with soft spheres (contact 0.9 sigma_ab) first
    sig = np.array([[1.0, 0.8], [0.8, 0.88]])
    soft = mdhess.soft_sphere(sigma=0.9 * sig, epsilon=1.0, alpha=2.0)
    R = rng.uniform(0.0, L, (n, 3))
    for _ in range(200):
        F = np.asarray(mdhess.forces(soft, R, box=box, species=species))
        if np.abs(F).max() < 1e-3:
            break
        R = R + 0.2 * F
    R = lbfgs(value_and_grad, R, species, 1e-4) % L

    # Langevin dynamics, BAOAB splitting (Leimkuhler & Matthews 2013), unit masses.
    V = rng.normal(0.0, np.sqrt(T), (n, 3))
    force = lambda X: -np.asarray(grad(X, species))  # noqa: E731
    F = force(R)
    c1 = np.exp(-GAMMA * DT)
    c2 = np.sqrt((1.0 - c1 * c1) * T)
    frames, times = [], []
    n_steps = SETTLE + EVERY * (N_FRAMES - 1)
    for step in range(1, n_steps + 1):
        V += 0.5 * DT * F
        R += 0.5 * DT * V
        V = c1 * V + c2 * rng.normal(size=V.shape)
        R += 0.5 * DT * V
        R %= L
        F = force(R)
        V += 0.5 * DT * F
        if step >= SETTLE and (step - SETTLE) % EVERY == 0:
            frames.append(R.copy())
            times.append(step * DT)
    out = []
    for k, X in enumerate(frames):
        Xm = lbfgs(value_and_grad, X, species, 1e-4)
        try:  # Newton converges quadratically once H is positive definite (up to translations)
            Xm, fmax = newton_polish(ka, Xm, box, species)
        except np.linalg.LinAlgError:
            fmax = np.inf
        if fmax > 1e-8:
            Xm, fmax = newton_polish(ka, lbfgs(value_and_grad, Xm, species, 1e-6), box, species)
        if fmax > 1e-8:
            raise RuntimeError(f"frame {k}: minimisation stopped at max |force| {fmax:.2e}")
        w = np.linalg.eigvalsh(np.asarray(mdhess.hessian(ka, Xm, box=box, species=species)))
        out.append(Xm % L)
        e = mdhess.energy(ka, Xm, box=box, species=species) / n
        print(
            f"frame {k}: t = {times[k]:.2f}, inherent-structure energy per atom {e:.6f}, "
            f"max |force| {fmax:.1e}, lowest Hessian eigenvalues {np.round(w[:4], 8).tolist()}"
        )
    return np.stack(out), box, species, np.asarray(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    R, box, species, times = generate()
    args.out.mkdir(parents=True, exist_ok=True)
    write_h5md(args.out / "ka500.h5", R, box=box, species=species, masses=np.ones(len(species)), time=times,
               author="mdhess examples/make_data.py")  # fmt: skip
    write_mdtraj(args.out / "ka500_mdtraj.h5", R, box=box, atom_names=np.array(["A", "B"])[species], time=times)
    print(f"wrote {args.out / 'ka500.h5'} and {args.out / 'ka500_mdtraj.h5'} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

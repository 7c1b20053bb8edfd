"""Example 7: phonon band structure and DOS of fcc argon from the exact dynamical matrix.

    python examples/07_argon_phonons.py [--out out/]

Lennard-Jones fcc in reduced units (sigma = epsilon = m = 1), cutoff 2.5 sigma, truncated and
shifted. The lattice constant is relaxed by minimising the energy per atom of the one-atom
primitive cell (mdhess sums every image within the cutoff, so no supercell is needed), then
``mdhess.phonons`` gives frequencies at any q: bands along Gamma-X-W-K-Gamma-L, the DOS on a
Monkhorst-Pack mesh, group velocities and the harmonic heat capacity.

Checks (each against an independent route):
- a0 and the angular frequencies at X and L against the reference values of issue 16
  (a0 = 1.549603, omega(X) T/L = 18.406/26.905, omega(L) T/L = 12.241/26.867);
- a Gamma-centred 3x3x3 mesh gives exactly the normal-mode frequencies of the 27-atom supercell
  (mdhess.hessian + mdhess.normal_modes);
- the long-wavelength group velocities along [100] against central differences of the bands;
- the classical heat capacity per atom is k_B (equipartition) and the quantum one below it.
Writes the band + DOS plot to --out. A few seconds on a 2-core CPU.
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

import mdhess


def fcc_primitive(a):
    return 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def main(out: Path):
    pot = mdhess.lennard_jones(cutoff=2.5)
    energy = lambda a: mdhess.energy(pot, np.zeros((1, 3)), box=fcc_primitive(a))
    a0 = float(minimize_scalar(energy, bracket=(1.50, 1.55, 1.60), tol=1e-12).x)
    cell = fcc_primitive(a0)
    print(f"relaxed a0 = {a0:.6f} sigma (E = {energy(a0):.6f} epsilon per atom)")
    assert abs(a0 - 1.549603) < 2e-6

    ph = mdhess.phonons(pot, np.zeros((1, 3)), cell, units="lj")
    wX, wL = ph.omega([[0.5, 0.0, 0.5], [0.5, 0.5, 0.5]])  # X and L in the primitive reciprocal basis
    print(f"omega(X) T/L = {wX[0]:.3f}/{wX[2]:.3f}, omega(L) T/L = {wL[0]:.3f}/{wL[2]:.3f} (rad/tau)")
    assert np.allclose(wX, [18.406, 18.406, 26.905], atol=1.5e-3) and np.allclose(wL, [12.241, 12.241, 26.867], atol=1.5e-3)

    # Gamma-centred mesh = supercell normal modes
    _, f = ph.mesh_frequencies(3, gamma_centered=True)
    shifts = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) @ cell
    nm = mdhess.normal_modes(mdhess.hessian(pot, shifts, box=3 * cell), units="lj", project="translations")
    err = np.abs(np.sort(f.ravel()) - np.sort(nm.frequencies)).max()
    print(f"3x3x3 mesh vs 27-atom supercell normal modes: max |diff| = {err:.2e} (1/tau)")
    assert err < 1e-9 * f.max()

    # group velocities near Gamma along [100] (Cartesian) against central differences of omega
    k = np.array([[0.02, 0.0, 0.0]]) @ np.linalg.inv(ph.dynmat.reciprocal)  # reduced q of k = 0.02 x
    v = ph.group_velocities(k[0])[:, 0]
    h = 1e-5 * np.array([[1.0, 0.0, 0.0]]) @ np.linalg.inv(ph.dynmat.reciprocal)
    fd = (ph.omega(k[0] + h[0]) - ph.omega(k[0] - h[0])) / 2e-5
    print(f"sound velocities along [100]: T {v[0]:.4f}, L {v[2]:.4f} sigma/tau (central differences {fd[0]:.4f}, {fd[2]:.4f})")
    assert np.allclose(v, fd, atol=1e-6 * fd.max())

    # heat capacity per atom: classical = k_B exactly (equipartition), quantum below it
    c_cl = ph.thermodynamics(1.0, 8, quantum=False, hbar=0.1).heat_capacity
    c_q = ph.thermodynamics(1.0, 8, quantum=True, hbar=0.1).heat_capacity
    print(f"C_v per atom at T = 1: classical {c_cl / 3:.6f} k_B per mode, quantum (hbar = 0.1) {c_q:.4f} k_B")
    assert abs(c_cl - 3.0) < 1e-12 and 0 < c_q < 3.0

    bands = ph.band_structure("GXWKGL", 200)
    dos = ph.dos(16)
    ph.plot(bands=bands, dos=dos, output=out / "argon_phonons.png")
    print(f"bands: {bands.frequencies.shape[0]} q-points, top frequency {bands.frequencies.max():.4f} 1/tau; "
          f"wrote {out / 'argon_phonons.png'}")  # fmt: skip
    print("all checks passed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for the plot")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    main(args.out)

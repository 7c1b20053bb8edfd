"""Example 3: exact vibrations and thermochemistry of a Lennard-Jones cluster with ASE.

    python examples/03_ase_vibrations.py [--out out/]

An argon LJ55 Mackay icosahedron is relaxed with ASE's BFGS on the mdhess calculator, its
harmonic vibrations are taken from the exact Hessian (``mdhess.ase.vibrations``) and compared
with ASE's own finite-difference ``Vibrations`` (660 force calls, 4-point differences); the
harmonic Helmholtz energy at 40 K follows from both. Writes the vibrational DOS plot and the
jmol animation file of the stiffest mode to --out.

Checks: every vibrational energy agrees with the finite-difference one within the
finite-difference error (delta = 2e-3 A, nfree = 4: ~1e-9 relative), the six zero modes vanish,
and both free energies agree to 1e-8 relative. Runs in ~15 s on a 2-core CPU.
"""

import argparse
import time
from pathlib import Path

import numpy as np
from ase.cluster import Icosahedron
from ase.optimize import BFGS
from ase.thermochemistry import HarmonicThermo
from ase.vibrations import Vibrations

import mdhess
from mdhess.ase import MdhessCalculator, vibrations

SIGMA, EPS = 3.4, 0.0104  # argon, eV and A (mdhess.load_potential("argon") uses the same)


def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    pot = mdhess.lennard_jones(sigma=SIGMA, epsilon=EPS)  # free cluster: no cutoff needed
    atoms = Icosahedron("Ar", noshells=3, latticeconstant=2 ** (2 / 3) * SIGMA)
    atoms.calc = MdhessCalculator(pot)
    BFGS(atoms, logfile=None).run(fmax=1e-6, steps=1000)
    print(
        f"LJ{len(atoms)} relaxed: E = {atoms.get_potential_energy():.6f} eV "
        f"({atoms.get_potential_energy() / EPS:.4f} epsilon; Wales & Doye: -279.2485)"
    )

    t = time.perf_counter()
    exact = vibrations(atoms, pot)
    t_exact = time.perf_counter() - t

    t = time.perf_counter()
    fd_dir = out / "vib_fd"
    vib = Vibrations(atoms, name=str(fd_dir), delta=2e-3, nfree=4)
    vib.clean()
    vib.run()
    fd = vib.get_vibrations()
    vib.clean()
    t_fd = time.perf_counter() - t
    print(
        f"exact Hessian: {t_exact:.2f} s;  ASE finite differences ({4 * 3 * len(atoms)} force calls): {t_fd:.2f} s"
    )

    e_ex = np.sort(np.abs(exact.get_energies()))
    e_fd = np.sort(np.abs(fd.get_energies()))
    vib_ex, vib_fd = e_ex[6:], e_fd[6:]
    err = np.abs(vib_ex - vib_fd).max() / vib_ex.max()
    print(
        f"{len(vib_ex)} vibrational energies {1e3 * vib_ex.min():.3f} .. {1e3 * vib_ex.max():.3f} meV; "
        f"max |exact - FD| / max = {err:.1e}"
    )
    print(f"zero modes (translations, rotations): max {1e3 * e_ex[:6].max():.1e} meV")
    assert err <= 1e-7
    # energies ~ sqrt(eigenvalue); residual forces (fmax 1e-6 eV/A) leave rotational eigenvalues
    # ~ |F| / |r| ~ 1e-7 eV/A^2, against ~0.1 for the stiffest mode
    assert (e_ex[:6].max() / vib_ex.max()) ** 2 <= 1e-6

    T = 40.0
    F_ex = HarmonicThermo(vib_ex).get_helmholtz_energy(T, verbose=False)
    F_fd = HarmonicThermo(vib_fd).get_helmholtz_energy(T, verbose=False)
    S_ex = HarmonicThermo(vib_ex).get_entropy(T, verbose=False)
    print(
        f"harmonic Helmholtz energy at {T:.0f} K: exact {F_ex:.8f} eV, FD {F_fd:.8f} eV; "
        f"entropy {S_ex * 1e3:.5f} meV/K"
    )
    assert abs(F_ex - F_fd) <= 1e-8 * abs(F_ex)

    table = exact.tabulate().splitlines()
    print("\n".join(table[:6] + ["  ..."] + table[-6:]))
    exact.write_jmol(str(out / "lj55_modes.xyz"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.spectrum.dosdata import RawDOSData

    # the 159 vibrational energies, broadened (ASE's get_dos() also carries the 6 zero modes,
    # as complex numbers when their eigenvalues round below zero)
    dos = RawDOSData(vib_ex, np.ones_like(vib_ex)).sample_grid(
        400, xmin=0.0, xmax=1.1 * vib_ex.max(), width=2e-4
    )
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(1e3 * dos.get_energies(), dos.get_weights() / 1e3)
    ax.set_xlabel("energy (meV)")
    ax.set_ylabel("DOS (1/meV)")
    ax.set_title(f"LJ{len(atoms)} vibrational DOS (exact Hessian)")
    fig.tight_layout()
    fig.savefig(out / "lj55_dos.png", dpi=100)
    print(f"wrote {out / 'lj55_dos.png'} and {out / 'lj55_modes.xyz'}")
    print("all checks passed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out/)")
    main(ap.parse_args().out)

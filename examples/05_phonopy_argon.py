"""Example 5: phonon DOS and thermal properties of fcc argon through phonopy.

    python examples/05_phonopy_argon.py [--out out/]

The bundled "argon" potential (Lennard-Jones, eV and A, cutoff 8.5 A) on an fcc crystal
(a = 5.26 A), a 4x4x4 conventional supercell (256 atoms). mdhess gives phonopy the exact force
constants (``mdhess.phonopy.build_phonopy``); phonopy does the rest: band frequencies, a 20^3
mesh, the total DOS and the harmonic free energy, entropy and heat capacity from 5 to 80 K.

Check: phonopy's own finite-difference force constants (displacements of 0.01 and 0.005 A,
supercell forces from mdhess.forces) converge to the exact ones as d^2, and their thermal
properties approach the exact ones the same way (Richardson extrapolation removes >= 90% of the
difference). Writes the DOS plot and a thermal-properties table to --out. ~20 s on a 2-core CPU.
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from ase.build import bulk
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

import mdhess
from mdhess.phonopy import build_phonopy, force_constants

A_FCC, SUPERCELL, MESH = 5.26, [4, 4, 4], [20, 20, 20]
# phonopy's eV/A/amu units give THz; 1 THz = 4.1357 meV


def finite_difference_phonopy(pot, unitcell, distance):
    """phonopy's own route: displaced supercells, their forces (from mdhess), differences."""
    ph = Phonopy(unitcell, supercell_matrix=SUPERCELL, primitive_matrix="F")
    ph.generate_displacements(distance=distance, is_plusminus=True)
    ph.forces = [
        np.asarray(mdhess.forces(pot, s.positions, box=s.cell)) for s in ph.supercells_with_displacements
    ]
    ph.produce_force_constants()
    return ph


def thermal(ph):
    ph.run_mesh(MESH, is_gamma_center=True)
    # the three acoustic modes at Gamma (|f| ~ 1e-8 THz, numerical noise) are left out of the sums
    ph.run_thermal_properties(t_min=5, t_max=80, t_step=15, cutoff_frequency=0.01)
    tp = ph.thermal_properties
    return tp.temperatures, np.stack([tp.free_energy, tp.entropy, tp.heat_capacity])


def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    pot = mdhess.load_potential("argon")
    uc = bulk("Ar", "fcc", a=A_FCC, cubic=True)
    unitcell = PhonopyAtoms(symbols=["Ar"] * len(uc), positions=uc.positions, cell=uc.cell[:])

    t = time.perf_counter()
    ph = build_phonopy(pot, unitcell, SUPERCELL, primitive_matrix="F")
    t_exact = time.perf_counter() - t
    t = time.perf_counter()
    force_constants(pot, ph.supercell)
    t_warm = time.perf_counter() - t
    print(
        f"fcc argon, {len(ph.supercell)}-atom supercell: build_phonopy {t_exact:.2f} s (phonopy's symmetry "
        f"setup and JIT compilation included); exact force constants {ph.force_constants.shape} again: {t_warm:.3f} s"
    )

    ph.run_qpoints([[0, 0, 0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.5]])  # Gamma, X, L (primitive basis)
    f = ph.qpoints.frequencies
    print(f"frequencies (THz): Gamma {np.round(f[0], 4)}, X {np.round(f[1], 3)}, L {np.round(f[2], 3)}")
    assert np.abs(f[0]).max() < 1e-4, "acoustic modes must vanish at Gamma"

    T, tp = thermal(ph)
    ph.run_total_dos()
    dos = ph.total_dos

    fds = {d: finite_difference_phonopy(pot, unitcell, d) for d in (0.01, 0.005)}
    errs = {
        d: np.linalg.norm(p.force_constants - ph.force_constants) / np.linalg.norm(ph.force_constants)
        for d, p in fds.items()
    }
    print(
        f"phonopy finite differences: force-constant error {errs[0.01]:.2e} (d=0.01 A), "
        f"{errs[0.005]:.2e} (d=0.005 A): ratio {errs[0.01] / errs[0.005]:.2f} (d^2 -> 4)"
    )
    assert 3.8 <= errs[0.01] / errs[0.005] <= 4.2

    t1, t2 = thermal(fds[0.01])[1], thermal(fds[0.005])[1]
    rich = (4 * t2 - t1) / 3
    ok = np.abs(rich - tp) <= 0.1 * np.abs(t2 - tp) + 1e-10 * np.abs(tp)
    print("   T (K)   F exact (kJ/mol)  F FD d=0.005   S exact (J/K/mol)  Cv exact (J/K/mol)")
    for k in range(len(T)):
        print(f"  {T[k]:6.1f}   {tp[0, k]:14.6f}   {t2[0, k]:12.6f}   {tp[1, k]:16.5f}   {tp[2, k]:16.5f}")
    assert ok.all(), "finite-difference thermal properties must converge to the exact ones"
    print(f"Cv at 80 K: {tp[2, -1]:.3f} J/K/mol (Dulong-Petit 3R = {3 * 8.314462618:.3f})")

    np.savetxt(
        out / "argon_thermal.txt",
        np.column_stack([T, tp.T]),
        header="T_K free_energy_kJ_per_mol entropy_J_per_K_mol heat_capacity_J_per_K_mol",
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(dos.frequency_points, dos.dos)
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("DOS (states / THz / cell)")
    ax.set_title("fcc argon phonon DOS (exact force constants)")
    fig.tight_layout()
    fig.savefig(out / "argon_phonon_dos.png", dpi=100)
    print(f"wrote {out / 'argon_phonon_dos.png'} and {out / 'argon_thermal.txt'}")
    print("all checks passed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out/)")
    main(ap.parse_args().out)

"""Phonon band structure of fcc argon at 200 q-points: mdhess's exact lattice sum against phonopy's
displacement route and ASE's ``Phonons``, side by side in one run.

    python benchmarks/bench_phonons.py           # ~1-2 minutes on a 2-core CPU
    python benchmarks/bench_phonons.py --quick   # smaller supercells (smoke test)

Argon: the bundled "argon" potential (LJ, eV and A, cutoff 8.5 A, shifted), fcc a = 5.26 A,
primitive cell, ASE's path GXWKGLUWLK with 200 points. Each route runs in its own subprocess,
timed from the structure to the 200 x 3 frequencies, CPU time of the process (robust when other
jobs load the machine) and wall time (first call: JIT compilation and the route's own imports
included; the imports of numpy, JAX, ASE and phonopy are not):

- mdhess: ``mdhess.phonons(...).band_structure(path)`` (no supercell); also the warm time (a
  second band structure on the same object).
- phonopy: ``Phonopy(conventional cell, 4x4x4, primitive_matrix="F")`` with symmetry on
  (one displacement for fcc), ``is_plusminus=True``, 0.01 A; supercell forces from mdhess.forces;
  ``produce_force_constants``; ``run_qpoints`` on the same q.
- ASE: ``ase.phonons.Phonons`` on the primitive cell, supercell 7x7x7 (the cutoff sphere fits in
  its offset range), delta 0.01 A, forces from ``mdhess.ase.MdhessCalculator``; ``band_structure``.

The frequency differences are against mdhess (exact): what remains is the route's displacement
error (O(delta^2)) and its supercell truncation.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import run_worker

A = 5.26
NPOINTS = 200
PATH = "GXWKGLUWLK"


def _setup():
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    from ase.build import bulk

    import mdhess

    atoms = bulk("Ar", "fcc", a=A)
    return np, mdhess, atoms, atoms.cell.bandpath(PATH, npoints=NPOINTS)


def worker(name, n):
    np, mdhess, atoms, bp = _setup()
    pot = mdhess.load_potential("argon")
    q = bp.kpts
    out = {}
    if name == "mdhess":
        t, c = time.perf_counter(), time.process_time()
        ph = mdhess.phonons(pot, atoms.positions, atoms.cell[:], masses=atoms.get_masses(), units="metal")
        f = ph.band_structure(bp).frequencies
        out["time"], out["cpu"] = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        ph.band_structure(bp)
        out["warm"] = time.perf_counter() - t
    elif name == "phonopy":
        from ase.build import bulk
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms

        uc = bulk("Ar", "fcc", a=A, cubic=True)
        t, c = time.perf_counter(), time.process_time()
        ph = Phonopy(PhonopyAtoms(symbols=["Ar"] * 4, positions=uc.positions, cell=uc.cell[:], masses=[39.948] * 4),
                     supercell_matrix=[n, n, n], primitive_matrix="F")  # fmt: skip
        ph.generate_displacements(distance=0.01, is_plusminus=True)
        scs = ph.supercells_with_displacements
        ph.forces = [np.asarray(mdhess.forces(pot, s.positions, box=s.cell)) for s in scs]
        ph.produce_force_constants()
        # phonopy's q are in the primitive reciprocal basis: ASE's fcc primitive cell is the same
        # lattice; map through Cartesian wavevectors to be safe
        B_ase = np.linalg.inv(atoms.cell[:]).T
        B_ph = np.linalg.inv(ph.primitive.cell).T
        qp = (q @ B_ase.T) @ np.linalg.inv(B_ph.T)
        ph.run_qpoints(qp)
        f = ph.qpoints.frequencies
        out["time"], out["cpu"] = time.perf_counter() - t, time.process_time() - c
        out["displacements"] = len(scs)
        out["supercell_atoms"] = len(ph.supercell)
        # phonopy's THz factor (older CODATA) differs from mdhess's by 1.2e-7 relative: rescale
        from phonopy.physical_units import get_physical_units

        from mdhess._units import UNIT_SYSTEMS, frequency_factor

        f = f / get_physical_units().DefaultToTHz * frequency_factor(UNIT_SYSTEMS["metal"], "THz")
    elif name == "ase":
        from ase.phonons import Phonons
        from ase.units import _e, _hbar

        from mdhess.ase import MdhessCalculator

        with tempfile.TemporaryDirectory() as d:
            cwd = os.getcwd()
            os.chdir(d)
            try:
                t, c = time.perf_counter(), time.process_time()
                p = Phonons(atoms, MdhessCalculator(pot), supercell=(n, n, n), delta=0.01, name="ph")
                p.run()
                p.read(acoustic=True)
                e = p.band_structure(q)
                out["time"], out["cpu"] = time.perf_counter() - t, time.process_time() - c
            finally:
                os.chdir(cwd)
        f = np.sort(e, axis=1) * _e / (2 * np.pi * _hbar) * 1e-12
        out["displacements"] = 6
        out["supercell_atoms"] = n**3
    ref = mdhess.phonons(pot, atoms.positions, atoms.cell[:], masses=atoms.get_masses(), units="metal").frequencies(q)
    out["max_diff_THz"] = float(np.abs(np.sort(f, axis=1) - ref).max())
    out["max_freq_THz"] = float(ref.max())
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, default=0)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.n)
        return
    cases = [("mdhess", 0), ("phonopy", 2 if a.quick else 4), ("ase", 5 if a.quick else 7)]
    res = {name: run_worker(__file__, name, n) for name, n in cases}
    base = res["mdhess"].get("cpu")
    print(f"fcc argon, {NPOINTS} q-points along {PATH}")
    print("| route | supercell | displaced cells | CPU time | CPU time / mdhess | wall time | max abs freq. diff vs mdhess |")
    print("|---|---|---|---|---|---|---|")
    for name, n in cases:
        r = res[name]
        if "error" in r:
            print(f"| {name} | - | - | failed: {r['error']} | - | - | - |")
            continue
        sc = "none (lattice sum)" if name == "mdhess" else f"{r['supercell_atoms']} atoms"
        disp = "0" if name == "mdhess" else str(r["displacements"])
        warm = f" (warm {r['warm']:.3g} s)" if "warm" in r else ""
        print(f"| {name} | {sc} | {disp} | {r['cpu']:.3g} s | {r['cpu'] / base:.3g} | {r['time']:.3g} s{warm} | {r['max_diff_THz']:.2e} THz "
              f"(top {r['max_freq_THz']:.3f} THz) |")  # fmt: skip


if __name__ == "__main__":
    main()

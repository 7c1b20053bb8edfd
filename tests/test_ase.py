"""mdhess.ase: the calculator against ASE's own Lennard-Jones calculator and matscipy's pair
calculator (same property names), and exact vibrations against ASE's finite-difference Vibrations."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ase")
from ase.build import bulk  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from ase.calculators.lj import LennardJones  # noqa: E402
from ase.cluster import Icosahedron  # noqa: E402
from ase.optimize import BFGS  # noqa: E402

import mdhess  # noqa: E402
from mdhess.ase import MdhessCalculator, vibrations  # noqa: E402

# Argon in ASE units (eV, A).
SIGMA, EPS = 3.405, 0.0103
RC = 3.0 * SIGMA  # ASE LennardJones' default cutoff; smooth=False shifts the energy there, as mdhess does


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


def argon_lj():
    return mdhess.lennard_jones(sigma=SIGMA, epsilon=EPS, cutoff=RC)


def fcc_argon(rattle=0.05, seed=0):
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((3, 3, 3))
    atoms.positions += np.random.default_rng(seed).uniform(-rattle, rattle, atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def lj13():
    """LJ13 icosahedron relaxed to fmax 1e-7 eV/A with ASE's own LJ calculator."""
    atoms = Icosahedron("Ar", noshells=2, latticeconstant=2 ** (2 / 3) * SIGMA)
    atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPS, rc=RC)
    BFGS(atoms, logfile=None).run(fmax=1e-7, steps=500)
    assert np.abs(atoms.get_forces()).max() < 1e-7
    atoms.calc = None
    return atoms


def test_energy_forces_stress_match_ase_lennard_jones():
    # Same shifted hard cut at 3 sigma; sums in another order -> agreement to rounding (1e-12).
    atoms = fcc_argon()
    atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPS, rc=RC)
    E0, F0, S0 = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = MdhessCalculator(argon_lj())
    E, F, S = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert abs(E - E0) <= 1e-12 * abs(E0)
    assert rel(F, F0) <= 1e-12
    assert S.shape == (6,) and rel(S, S0) <= 1e-12
    # the same numbers as the plain API
    assert E == pytest.approx(mdhess.energy(argon_lj(), atoms.positions, box=atoms.cell[:]), rel=1e-14)


def test_results_follow_position_changes():
    atoms = fcc_argon()
    atoms.calc = MdhessCalculator(argon_lj())
    E1 = atoms.get_potential_energy()
    atoms.positions[0] += [0.1, 0.0, 0.0]
    E2 = atoms.get_potential_energy()
    assert E1 != E2
    assert E2 == pytest.approx(mdhess.energy(argon_lj(), atoms.positions, box=atoms.cell[:]), rel=1e-14)


def test_hessian_and_dynamical_matrix_match_matscipy():
    # Two species through the element mapping; matscipy's LennardJonesCut is the same shifted hard
    # cut, and both libraries return a BSR (3N, 3N) Hessian and its mass-weighted version.
    pytest.importorskip("matscipy")
    import matscipy.calculators.pair_potential as pp

    atoms = fcc_argon(seed=1)
    symbols = np.array(["Ar"] * len(atoms))
    symbols[::5] = "Kr"
    atoms.set_chemical_symbols(symbols.tolist())
    sig = np.array([[3.405, 3.6], [3.6, 3.65]])
    eps = np.array([[0.0103, 0.0125], [0.0125, 0.0140]])
    rc = 2.5 * sig
    pot = mdhess.lennard_jones(sigma=sig, epsilon=eps, cutoff=rc)
    calc = MdhessCalculator(pot, species={"Ar": 0, "Kr": 1})
    Z = {0: 18, 1: 36}
    ms = pp.PairPotential(
        {
            (Z[a], Z[b]): pp.LennardJonesCut(epsilon=eps[a, b], sigma=sig[a, b], cutoff=rc[a, b])
            for a, b in [(0, 0), (0, 1), (1, 1)]
        }
    )
    H = calc.get_property("hessian", atoms)
    D = calc.get_property("dynamical_matrix", atoms)
    Hm = ms.get_property("hessian", atoms)
    Dm = ms.get_property("dynamical_matrix", atoms)
    n3 = 3 * len(atoms)
    assert H.format == "bsr" and H.shape == (n3, n3) and H.blocksize == (3, 3)
    assert D.format == "bsr" and D.shape == (n3, n3)
    # matscipy sums pairs in another order; 1e-11 relative covers rounding
    assert rel(H.toarray(), Hm.toarray()) <= 1e-11
    assert rel(D.toarray(), Dm.toarray()) <= 1e-11
    m3 = np.repeat(atoms.get_masses(), 3)
    assert np.allclose(D.toarray() * np.sqrt(np.outer(m3, m3)), H.toarray(), rtol=1e-14, atol=0)
    Hd = calc.get_hessian(atoms, format="dense")
    assert isinstance(Hd, np.ndarray) and np.array_equal(Hd, H.toarray())


def _ase_fd_hessian(atoms0, tmp_path, delta, nfree):
    from ase.vibrations import Vibrations

    atoms = atoms0.copy()
    atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPS, rc=RC)
    vib = Vibrations(atoms, name=str(tmp_path / f"vib{nfree}_{delta}"), delta=delta, nfree=nfree)
    vib.run()
    return vib.get_vibrations()


def test_lj13_vibrations_match_ase_finite_differences(lj13, tmp_path):
    # ASE Vibrations with ASE's own LJ calculator. Error model: the finite-difference Hessian has
    # truncation error C delta^2 (nfree=2, central 2-point) or C' delta^4 (nfree=4); rounding is
    # ~ eps |F| / delta ~ 1e-13 eV/A^2 at a minimum, negligible here. Measured: 2.04e-6 relative
    # (Frobenius) at delta=1e-3 A and 8.16e-6 at 2e-3 (ratio 4.00) for nfree=2; 5.2e-12 at 1e-3
    # for nfree=4. So: the nfree=2 discrepancy must shrink 4x when delta halves (it is truncation,
    # not a difference in the Hessian), and nfree=4 must agree to 2e-11.
    exact = vibrations(lj13, argon_lj())
    H = exact.get_hessian_2d()
    err1 = rel(H, _ase_fd_hessian(lj13, tmp_path, 2e-3, 2).get_hessian_2d())
    err2 = rel(H, _ase_fd_hessian(lj13, tmp_path, 1e-3, 2).get_hessian_2d())
    assert err2 <= 3e-6 and 3.8 <= err1 / err2 <= 4.2
    fd = _ase_fd_hessian(lj13, tmp_path, 1e-3, 4)
    assert rel(H, fd.get_hessian_2d()) <= 2e-11
    # 33 vibrational energies (3N - 6), sorted: |d lambda| <= ||dH||_2, so they agree to ~1e-10
    e_ex = np.sort(np.abs(exact.get_energies()))[6:]
    e_fd = np.sort(np.abs(fd.get_energies()))[6:]
    assert e_ex.min() > 1e-3  # meV-scale modes: the cluster is a true minimum
    assert np.abs(e_ex - e_fd).max() <= 1e-9 * e_ex.max()
    # six zero modes (3 translations, 3 rotations) of a free cluster at a minimum; energies are
    # hbar omega ~ sqrt(eigenvalue), and residual forces (fmax 1e-7 eV/A) leave rotational
    # eigenvalues ~ |F| / |r| ~ 1e-8 eV/A^2, so compare squares: (e0 / e_max)^2 < 1e-8.
    assert (np.sort(np.abs(exact.get_energies()))[:6].max() / e_ex.max()) ** 2 < 1e-8


def test_thermochemistry_from_exact_vibrations(lj13, tmp_path):
    # Harmonic free energy at 30 K from exact and finite-difference vibrational energies: they
    # differ by the frequency errors (~1e-6 relative) times kT-scale sensitivities.
    from ase.thermochemistry import HarmonicThermo
    from ase.vibrations import Vibrations

    atoms = lj13.copy()
    atoms.calc = MdhessCalculator(argon_lj())
    vib = Vibrations(atoms, name=str(tmp_path / "vib"), delta=1e-3, nfree=4)
    vib.run()
    e_fd = np.sort(np.abs(vib.get_vibrations().get_energies()))[6:]
    e_ex = np.sort(np.abs(vibrations(lj13, argon_lj()).get_energies()))[6:]
    F_fd = HarmonicThermo(e_fd).get_helmholtz_energy(30.0, verbose=False)
    F_ex = HarmonicThermo(e_ex).get_helmholtz_energy(30.0, verbose=False)
    assert abs(F_ex - F_fd) <= 1e-7 * abs(F_ex)


def test_vibrations_of_a_subset_is_the_hessian_submatrix(lj13):
    idx = [0, 3, 7]
    sub = vibrations(lj13, argon_lj(), indices=idx)
    H = np.asarray(mdhess.hessian(argon_lj(), lj13.positions))
    cols = (3 * np.array(idx)[:, None] + np.arange(3)).ravel()
    assert np.array_equal(sub.get_hessian_2d(), H[np.ix_(cols, cols)])
    assert list(sub.get_indices()) == idx
    with pytest.raises(mdhess.InputError, match="indices"):
        vibrations(lj13, argon_lj(), indices=[0, 0])
    with pytest.raises(mdhess.InputError, match="indices"):
        vibrations(lj13, argon_lj(), indices=[99])


def test_errors_name_the_argument(lj13):
    calc = MdhessCalculator(argon_lj())
    free = lj13.copy()
    free.calc = calc
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        free.get_stress()
    mixed = fcc_argon()
    mixed.pbc = [True, True, False]
    mixed.calc = MdhessCalculator(argon_lj())
    with pytest.raises(mdhess.InputError, match="pbc"):
        mixed.get_potential_energy()
    table = mdhess.lennard_jones(sigma=np.full((2, 2), SIGMA), epsilon=EPS, cutoff=RC)
    a = fcc_argon()
    a.calc = MdhessCalculator(table)
    with pytest.raises(mdhess.InputError, match=r"species=None.*'Ar': 0"):
        a.get_potential_energy()
    a.calc = MdhessCalculator(table, species={"Kr": 1})
    with pytest.raises(mdhess.InputError, match="'Ar'"):
        a.get_potential_energy()
    a.calc = MdhessCalculator(table, species={18: 2})
    with pytest.raises(mdhess.InputError, match="outside"):
        a.get_potential_energy()
    with pytest.raises(mdhess.InputError, match="potential"):
        MdhessCalculator("lj")
    with pytest.raises(mdhess.InputError, match="format"):
        calc.get_hessian(lj13, format="csr")


def test_atomic_number_keys_and_arrays_give_the_same_species():
    a = fcc_argon()
    table = mdhess.lennard_jones(
        sigma=np.full((2, 2), SIGMA), epsilon=np.array([[EPS, 0.0], [0.0, 0.0]]), cutoff=RC
    )
    a.calc = MdhessCalculator(table, species={18: 0})
    E1 = a.get_potential_energy()
    a.calc = MdhessCalculator(table, species=np.zeros(len(a), dtype=int))
    assert a.get_potential_energy() == E1
    a.calc = MdhessCalculator(argon_lj())
    assert a.get_potential_energy() == pytest.approx(E1, rel=1e-14)


def test_import_mdhess_does_not_import_the_integrations():
    code = (
        "import sys, mdhess; "
        "heavy = [m for m in ('ase', 'phonopy', 'jax_md', 'cvxopt') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

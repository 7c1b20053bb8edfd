"""mdhess.phonopy: exact force constants against phonopy's own finite differences (forces of the
displaced supercells from mdhess.forces), their (N, N, 3, 3) layout, and thermal properties."""

import warnings

import numpy as np
import pytest

pytest.importorskip("phonopy")
from ase.build import bulk  # noqa: E402
from phonopy import Phonopy  # noqa: E402
from phonopy.structure.atoms import PhonopyAtoms  # noqa: E402

import mdhess  # noqa: E402
from mdhess.phonopy import build_phonopy, force_constants, set_force_constants  # noqa: E402

ARGON = mdhess.lennard_jones(sigma=3.4, epsilon=0.0104, cutoff=8.5)  # eV, A (phonopy's units)
A_FCC = 5.26


def argon_unitcell():
    uc = bulk("Ar", "fcc", a=A_FCC, cubic=True)
    return PhonopyAtoms(symbols=["Ar"] * 4, positions=uc.positions, cell=uc.cell[:])


def fd_phonopy(distance, unitcell, potential=ARGON, species=None, supercell=(3, 3, 3)):
    """phonopy's finite-difference force constants, supercell forces from mdhess.forces."""
    ph = Phonopy(unitcell, supercell_matrix=list(supercell), primitive_matrix="F")
    ph.generate_displacements(distance=distance, is_plusminus=True)
    forces = []
    for sc in ph.supercells_with_displacements:
        s = None
        if species is not None:
            s = np.array([species[x] for x in sc.symbols])
        forces.append(np.asarray(mdhess.forces(potential, sc.positions, box=sc.cell, species=s)))
    ph.forces = forces
    ph.produce_force_constants()
    return ph


def thermal(ph, mesh=(10, 10, 10)):
    ph.run_mesh(list(mesh), is_gamma_center=True)
    # acoustic modes at Gamma (|f| ~ 1e-8 THz: rounding noise, log-divergent weight) are left out
    ph.run_thermal_properties(t_min=10, t_max=80, t_step=35, cutoff_frequency=0.01)
    tp = ph.thermal_properties
    return np.stack([tp.free_energy, tp.entropy, tp.heat_capacity])


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


@pytest.fixture(scope="module")
def exact():
    return build_phonopy(ARGON, argon_unitcell(), [3, 3, 3], primitive_matrix="F")


@pytest.fixture(scope="module")
def fds():
    return {d: fd_phonopy(d, argon_unitcell()) for d in (0.01, 0.005)}


def test_force_constants_match_phonopy_finite_differences(exact, fds):
    # phonopy's +-displacement differences have truncation error C d^2. Measured on this fcc
    # argon 108-atom supercell: 1.43e-4 relative (Frobenius) at d = 0.01 A and 3.57e-5 at 0.005
    # (ratio 4.00). The discrepancy must be that truncation: below 2e-4 and shrinking 4x (3.8-4.2).
    fc = exact.force_constants
    assert fc.shape == (108, 108, 3, 3)
    e1 = rel(fds[0.01].force_constants, fc)
    e2 = rel(fds[0.005].force_constants, fc)
    assert e1 <= 2e-4 and 3.8 <= e1 / e2 <= 4.2


def test_thermal_properties_match_phonopy_finite_differences(exact, fds):
    # Free energy, entropy and heat capacity at 10, 45, 80 K on a 10^3 mesh. The finite-difference
    # values carry an O(d^2) error; Richardson extrapolation (4 TP(d/2) - TP(d)) / 3 cancels it,
    # leaving O(d^4). So exact must sit within the finite-difference error of TP(0.005) (less than
    # 1e-3 relative, measured ~5e-5), and Richardson must remove >= 95% of that error.
    tp = thermal(exact)
    t1, t2 = thermal(fds[0.01]), thermal(fds[0.005])
    rich = (4 * t2 - t1) / 3
    err_fd = np.abs(t2 - tp)
    assert np.all(err_fd <= 1e-3 * np.abs(tp))
    assert np.all(np.abs(rich - tp) <= 0.05 * err_fd + 1e-12 * np.abs(tp))
    assert np.all(tp[2] > 0)  # heat capacity: a stable crystal


def test_layout_is_n_n_3_3_of_the_mdhess_hessian(exact):
    sc = exact.supercell
    n = len(sc)
    H = np.asarray(mdhess.hessian(ARGON, sc.positions, box=sc.cell))
    fc = force_constants(ARGON, sc)
    assert np.array_equal(fc, H.reshape(n, 3, n, 3).transpose(0, 2, 1, 3))
    # compact form: the primitive atoms' rows
    p2s = exact.primitive.p2s_map
    assert np.array_equal(force_constants(ARGON, sc, atoms=p2s), fc[p2s])
    # acoustic sum rule and symmetry fc[i, j] = fc[j, i]^T
    assert np.abs(fc.sum(axis=1)).max() <= 1e-12 * np.abs(fc).max()
    assert np.array_equal(fc, fc.transpose(1, 0, 3, 2))


def test_compact_force_constants_give_the_same_phonons(exact):
    compact = build_phonopy(ARGON, argon_unitcell(), [3, 3, 3], primitive_matrix="F", compact=True)
    assert compact.force_constants.shape == (1, 108, 3, 3)
    q = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.1, 0.2, 0.3]]
    exact.run_qpoints(q)
    compact.run_qpoints(q)
    f_full, f_comp = exact.qpoints.frequencies, compact.qpoints.frequencies
    assert np.allclose(f_full, f_comp, rtol=1e-12, atol=1e-10)
    assert np.abs(f_full[0]).max() < 1e-5  # acoustic modes vanish at Gamma (THz)
    assert f_full[1].min() > 0.5  # zone-boundary modes of argon are ~1-2 THz


def test_two_species_rocksalt_and_ase_input():
    # A rocksalt LJ mixture built from an ase.Atoms, species mapped by element.
    sig = np.array([[3.0, 2.8], [2.8, 3.3]])
    eps = np.array([[0.01, 0.03], [0.03, 0.012]])
    pot = mdhess.lennard_jones(sigma=sig, epsilon=eps, cutoff=7.5)
    uc = bulk("NaCl", "rocksalt", a=5.4, cubic=True)
    species = {"Na": 0, "Cl": 1}
    ph = build_phonopy(pot, uc, [2, 2, 2], primitive_matrix="F", species=species)
    # ASE's masses travel into phonopy with the structure
    assert np.allclose(np.sort(ph.primitive.masses), np.sort(uc.get_masses()[:2]), rtol=1e-12)
    unit = PhonopyAtoms(
        symbols=uc.get_chemical_symbols(), positions=uc.positions, cell=uc.cell[:], masses=uc.get_masses()
    )
    # truncation error C d^2 again: measured 1.56e-4 relative at d = 0.005 A; it must shrink 4x
    e1, e2 = (
        rel(
            fd_phonopy(d, unit, potential=pot, species=species, supercell=(2, 2, 2)).force_constants,
            ph.force_constants,
        )
        for d in (0.005, 0.0025)
    )
    assert e1 <= 3e-4 and 3.8 <= e1 / e2 <= 4.2
    with pytest.raises(mdhess.InputError, match="species"):
        build_phonopy(pot, uc, [1, 1, 1], primitive_matrix="F")


def test_errors():
    with pytest.raises(mdhess.InputError, match="PhonopyAtoms"):
        force_constants(ARGON, np.zeros((4, 3)))
    uc = bulk("Ar", "fcc", a=A_FCC, cubic=True)
    uc.pbc = False
    with pytest.raises(mdhess.InputError, match="pbc"):
        force_constants(ARGON, uc)
    with pytest.raises(mdhess.InputError, match="atoms"):
        force_constants(ARGON, argon_unitcell(), atoms=[7])


def test_set_force_constants_on_an_existing_phonopy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph = Phonopy(argon_unitcell(), supercell_matrix=[2, 2, 2], primitive_matrix="F")
    assert set_force_constants(ph, ARGON) is ph
    assert ph.force_constants.shape == (32, 32, 3, 3)

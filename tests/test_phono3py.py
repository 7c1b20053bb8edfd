"""mdhess.phono3py: exact fc3 in phono3py's layout against phono3py's own finite-displacement fc3,
and the lattice thermal conductivity from both.

LJ argon (eV, A), fcc a = 5.26 A, the 2x2x2 conventional supercell (32 atoms), cutoff 8.5 A with
the C4 switch from 7.0 A (third derivatives continuous: the finite differences see no kink).
Measured here: phono3py's fc3 (37 displaced supercells, forces from mdhess.forces) differs from
the exact one by 5.0e-3 (d = 0.03 A) and 1.25e-3 (d = 0.015 A) of max |fc3|: the ratio is 4.006
(the error is O(d^2)), and Richardson extrapolation (4 fc3(d/2) - fc3(d)) / 3 leaves 2.3e-6
(99.95% removed). kappa (RTA, 5x5x5 mesh) from the finite-difference fc3 is off by 2.5e-3 and
6.2e-4 (relative), from the extrapolated one by 7e-7.
"""

import warnings

import numpy as np
import pytest

import mdhess

phono3py = pytest.importorskip("phono3py")
pytest.importorskip("ase")
from ase.build import bulk  # noqa: E402

from mdhess.phono3py import build_phono3py, force_constants3  # noqa: E402

A_FCC = 5.26
D = (0.03, 0.015)  # displacement sizes (A)


@pytest.fixture(scope="module")
def argon():
    pot = mdhess.lennard_jones(sigma=3.4, epsilon=0.0104, cutoff=8.5, switch=7.0, smoothness=4)
    return pot, bulk("Ar", "fcc", a=A_FCC, cubic=True)


@pytest.fixture(scope="module")
def exact(argon):
    pot, uc = argon
    return build_phono3py(uc, [2, 2, 2], pot, primitive_matrix="F", compact=False)


def _finite_difference(pot, ph3_exact, d):
    """phono3py's own route: pairs of displaced supercells, their forces (mdhess), differences."""
    ph = phono3py.Phono3py(ph3_exact.unitcell, supercell_matrix=[2, 2, 2], primitive_matrix="F")
    ph.generate_displacements(distance=d)
    ph.forces = np.array(
        [np.asarray(mdhess.forces(pot, s.positions, box=s.cell)) for s in ph.supercells_with_displacements]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph.produce_fc3(fc_calculator="traditional", is_compact_fc=False, symmetrize_fc3r=False)
    ph.fc2 = ph3_exact.fc2  # the same (exact) harmonic part: only fc3 differs
    return ph


@pytest.fixture(scope="module")
def finite(argon, exact):
    return {d: _finite_difference(argon[0], exact, d) for d in D}


def _kappa(ph):
    ph.mesh_numbers = [5, 5, 5]
    ph.init_phph_interaction()
    ph.run_thermal_conductivity(temperatures=[20.0, 40.0])
    return np.asarray(ph.thermal_conductivity.kappa)[0, :, :3]  # (T, xx yy zz), W/(m K)


def test_exact_fc3_vs_phono3py_finite_differences(exact, finite):
    fc3 = exact.fc3
    n = len(exact.supercell)
    assert fc3.shape == (n, n, n, 3, 3, 3) and exact.fc2.shape == (n, n, 3, 3)
    scale = np.abs(fc3).max()
    gap = {d: np.abs(finite[d].fc3 - fc3).max() / scale for d in D}
    # the gap is the finite-difference error, O(d^2): halving d divides it by 4 (measured 4.006)
    assert 3.6 < gap[D[0]] / gap[D[1]] < 4.4, gap
    assert gap[D[0]] < 2e-2  # 5.0e-3 measured
    rich = (4 * finite[D[1]].fc3 - finite[D[0]].fc3) / 3
    removed = 1 - np.abs(rich - fc3).max() / scale / gap[D[1]]
    assert removed >= 0.95, removed  # 99.95% measured


def test_thermal_conductivity_exact_vs_finite_differences(exact, finite):
    k = _kappa(exact)
    assert np.all(k > 0) and np.allclose(k, k[:, :1], rtol=1e-8)  # cubic: isotropic
    rel = {d: np.abs(_kappa(finite[d]) - k).max() / np.abs(k).max() for d in D}
    # within the fc3 error: kappa ~ 1/|fc3|^2, so at most ~2x the relative fc3 gap (5e-3, 1.25e-3),
    # and it shrinks as d^2 too (measured 2.5e-3 and 6.2e-4)
    assert rel[D[0]] < 1e-2 and rel[D[1]] < 2.5e-3
    assert 3.0 < rel[D[0]] / rel[D[1]] < 5.0, rel


def test_layout_symmetry_and_compact(argon, exact):
    pot, uc = argon
    fc3 = exact.fc3
    n = fc3.shape[0]
    # the dense third-order tensor in mdhess's (3N, 3N, 3N) order, permuted to phono3py's
    dense = mdhess.third_order(pot, exact.supercell.positions, box=exact.supercell.cell, format="dense")
    np.testing.assert_array_equal(fc3, dense.reshape(n, 3, n, 3, n, 3).transpose(0, 2, 4, 1, 3, 5))
    # symmetric under any permutation of (i a), (j b), (k c); translation sum rule over k
    np.testing.assert_allclose(fc3, fc3.transpose(1, 0, 2, 4, 3, 5), atol=1e-15)
    np.testing.assert_allclose(fc3, fc3.transpose(0, 2, 1, 3, 5, 4), atol=1e-15)
    assert np.abs(fc3.sum(axis=2)).max() < 1e-12 * np.abs(fc3).max()
    # compact = the primitive's rows; the default build is compact; ASE and PhonopyAtoms agree
    compact = build_phono3py(uc, [2, 2, 2], pot, primitive_matrix="F")
    p2s = compact.primitive.p2s_map
    assert compact.fc3.shape == (len(p2s), n, n, 3, 3, 3)
    np.testing.assert_array_equal(compact.fc3, fc3[p2s])
    np.testing.assert_array_equal(force_constants3(compact, pot, compact=True), fc3[p2s])
    np.testing.assert_array_equal(force_constants3(exact.supercell, pot, compact=[0, 5]), fc3[[0, 5]])
    from ase import Atoms

    sc = exact.supercell
    ase_sc = Atoms(symbols=sc.symbols, positions=sc.positions, cell=sc.cell, pbc=True)
    np.testing.assert_array_equal(force_constants3(ase_sc, pot), fc3)


def test_bad_input(argon, exact):
    pot, uc = argon
    with pytest.raises(mdhess.InputError, match=r"force_constants3\(compact=True\) needs the primitive"):
        force_constants3(exact.supercell, pot, compact=True)
    with pytest.raises(mdhess.InputError, match=r"force_constants3\(compact=...\) must be False, True, or a 1-D"):
        force_constants3(exact.supercell, pot, compact=[0, 99])
    with pytest.raises(mdhess.InputError, match="expected a phonopy PhonopyAtoms or an ase.Atoms; got str"):
        force_constants3("Ar", pot)
    ka = mdhess.load_potential("kob-andersen")
    with pytest.raises(mdhess.InputError, match=r"force_constants3\(species=None\)"):
        force_constants3(exact.supercell, ka)
    with pytest.raises(mdhess.MemoryPlanError, match="Use compact=True"):
        force_constants3(exact.supercell, pot, memory_limit=1000)

"""Phonons from the exact lattice-sum dynamical matrix (mdhess.dynamical_matrix, mdhess.phonons)
against phonopy's dynamical matrix from mdhess force constants, ASE's finite-difference Phonons,
the mass-weighted Hessian of the cell and of a supercell, central differences in q, and the
LJ fcc reference values of issue 16."""

import warnings

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import mdhess
from mdhess.modes._phonons import monkhorst_pack

ARGON = mdhess.lennard_jones(sigma=3.4, epsilon=0.0104, cutoff=8.5)  # eV, A
M_AR = 39.948
A_AR = 5.26
LJ = mdhess.lennard_jones(cutoff=2.5)  # reduced units, truncated and shifted


def fcc_primitive(a):
    return 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def relaxed_a0(potential, bracket):
    """Lattice constant minimising the energy per atom of the fcc primitive cell (every image summed)."""
    e = lambda a: mdhess.energy(potential, np.zeros((1, 3)), box=fcc_primitive(a))
    res = minimize_scalar(e, bracket=bracket, tol=1e-12)
    return float(res.x)


# a triclinic two-species cell, smaller than twice the cutoff; positions relaxed at fixed cell
# (BFGS, largest force 7e-8); the lattice is unstable (imaginary modes), which D must show as well
TRI_CELL = np.array([[2.1, 0.0, 0.0], [0.6, 1.9, 0.0], [0.4, 0.5, 2.3]])
TRI_R = np.array([[0.1, 0.2, 0.05], [0.473148783918499, 0.485352588855955, 1.33430884766612],
                  [-0.393656032171298, 0.367947942167146, 0.92797105832166]])  # fmt: skip
TRI_S = np.array([0, 1, 1])
TRI_M = np.array([1.0, 2.5, 2.5])
TRI_POT = mdhess.lennard_jones(sigma=np.array([[1.0, 0.9], [0.9, 0.85]]), epsilon=np.array([[1.0, 1.3], [1.3, 0.7]]), cutoff=2.5)


def tri_phonons():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mdhess.NotAtEquilibriumWarning)
        return mdhess.phonons(TRI_POT, TRI_R, TRI_CELL, masses=TRI_M, species=TRI_S)


@pytest.fixture(scope="module")
def lj_fcc():
    a0 = relaxed_a0(LJ, (1.50, 1.55, 1.60))
    return a0, mdhess.phonons(LJ, np.zeros((1, 3)), fcc_primitive(a0), units="lj")


@pytest.fixture(scope="module")
def tri():
    return tri_phonons()


def test_lj_fcc_reference_values(lj_fcc):
    # issue 16's independent values (6-7 significant digits); a0 from minimising E(a) per atom
    a0, ph = lj_fcc
    assert abs(a0 - 1.549603) < 2e-6
    w = ph.omega([[0.5, 0.0, 0.5], [0.5, 0.5, 0.5]])  # X, L of the fcc primitive reciprocal basis
    np.testing.assert_allclose(w[0], [18.406, 18.406, 26.905], atol=1.5e-3)
    np.testing.assert_allclose(w[1], [12.241, 12.241, 26.867], atol=1.5e-3)
    np.testing.assert_allclose(ph.frequencies([0.5, 0.5, 0.5]), w[1] / (2 * np.pi), rtol=1e-14)


def test_gamma_is_mass_weighted_hessian_of_the_cell(tri):
    # the cutoff 2.5 exceeds half the cell widths: H sums every image, as D(0) does
    H = np.asarray(mdhess.hessian(TRI_POT, TRI_R, box=TRI_CELL, species=TRI_S))
    w = 1.0 / np.sqrt(np.repeat(TRI_M, 3))
    D0 = tri.dynmat.at([0.0, 0.0, 0.0])
    assert np.abs(D0.imag).max() == 0.0
    np.testing.assert_allclose(D0.real, H * w[:, None] * w[None, :], rtol=0, atol=1e-12 * np.abs(H).max() / TRI_M.min())


def test_hermitian_and_acoustic_sum_rule(tri):
    q = np.array([[0.13, -0.27, 0.41], [0.5, 0.0, 0.25], [0.0, 0.0, 0.0]])
    D = tri.dynmat.at(q)
    scale = np.abs(D).max()
    # built Hermitian by construction: exact up to the summation order of the diagonal blocks
    assert np.abs(D - np.conj(np.swapaxes(D, 1, 2))).max() <= 1e-14 * scale
    # acoustic sum rule: rigid translations sqrt(m) e_a are zero modes of D(0)
    T = np.kron(np.sqrt(TRI_M)[:, None], np.eye(3))
    assert np.abs(D[2] @ T).max() <= 1e-12 * scale
    # periodicity of the eigenvalues in q (D(q + G) is unitarily equivalent)
    np.testing.assert_allclose(tri.eigenvalues(q[0] + [1, -2, 1]), tri.eigenvalues(q[0]), rtol=0, atol=1e-11 * scale)


def test_batch_equals_single_calls(tri):
    q = np.random.default_rng(0).uniform(-0.5, 0.5, (70, 3))  # more than one jitted chunk
    D = mdhess.dynamical_matrix(TRI_POT, TRI_R, TRI_CELL, q, masses=TRI_M, species=TRI_S)
    assert D.shape == (70, 9, 9) and D.dtype == np.complex128
    for k in (0, 69):
        np.testing.assert_allclose(D[k], tri.dynmat.at(q[k]), rtol=0, atol=1e-13 * np.abs(D).max())


def test_gamma_centred_mesh_equals_supercell_modes(tri):
    # the frequencies of a Gamma-centred 2x3x2 mesh are exactly those of the 2x3x2 supercell
    m = (2, 3, 2)
    lam = np.sort(tri.eigenvalues(monkhorst_pack(m, gamma_centered=True)).ravel())
    shifts = np.stack(np.meshgrid(*[np.arange(k) for k in m], indexing="ij"), -1).reshape(-1, 3) @ TRI_CELL
    R = (shifts[:, None, :] + TRI_R[None]).reshape(-1, 3)
    H = np.asarray(mdhess.hessian(TRI_POT, R, box=np.array(m)[:, None] * TRI_CELL, species=np.tile(TRI_S, 12)))
    w = 1.0 / np.sqrt(np.repeat(np.tile(TRI_M, 12), 3))
    ref = np.linalg.eigvalsh(H * w[:, None] * w[None, :])
    np.testing.assert_allclose(lam, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


def test_group_velocities_match_central_differences(lj_fcc, tri):
    for ph, q in ((lj_fcc[1], [0.13, 0.27, 0.41]), (tri, [-0.17, 0.44, 0.47])):  # branches >= 3% apart
        v = ph.group_velocities(q)
        qc = ph.dynmat.cartesian(np.array([q]))[0]
        inv = np.linalg.inv(ph.dynmat.reciprocal)
        # central differences at h and 2h, Richardson-extrapolated: truncation O(h^4) ~ 1e-14 relative
        # even near the close branches of the triclinic cell; rounding eps |omega| / h ~ 1e-10 relative
        h = 2e-5

        def cd(h, ph=ph, qc=qc, inv=inv):
            return np.stack([(ph.omega((qc + h * e) @ inv) - ph.omega((qc - h * e) @ inv)) / (2 * h) for e in np.eye(3)], -1)

        fd = (4 * cd(h) - cd(2 * h)) / 3
        np.testing.assert_allclose(v, fd, rtol=0, atol=1e-8 * np.abs(fd).max())


def test_group_velocities_degenerate_follow_direction(lj_fcc):
    # on Gamma-L the transverse branches are degenerate; along a direction t leaving the line, the
    # two branches split with slopes eig(P^+ dD/dt P) / 2 omega: v . t must equal one-sided slopes
    ph = lj_fcc[1]
    q = np.array([0.1, 0.1, 0.1])
    t = np.array([1.0, -0.3, 0.2])
    t /= np.linalg.norm(t)
    v = ph.group_velocities(q, direction=t)
    qc = ph.dynmat.cartesian(q[None])[0]
    inv = np.linalg.inv(ph.dynmat.reciprocal)
    w0 = ph.omega(q)
    assert abs(w0[0] - w0[1]) < 1e-10 * w0[2]
    h = 1e-6  # forward and backward differences along +-t: O(h) each, their mean O(h^2) is not valid at a crossing
    fwd = (ph.omega((qc + h * t) @ inv) - w0) / h
    np.testing.assert_allclose(np.sort(v[:2] @ t), np.sort(fwd[:2]), rtol=0, atol=1e-4 * np.abs(fwd).max())
    assert abs(v[0] @ t - v[1] @ t) > 1e-3  # the test does split the pair
    assert np.all(ph.group_velocities([0.0, 0.0, 0.0]) == 0.0)  # zero modes: v = 0


def test_matches_phonopy_dynamical_matrix():
    # phonopy's D from mdhess force constants of a supercell commensurate with q equals the lattice
    # sum at that q entry by entry (same phase convention), to rounding: 1e-10 relative
    pytest.importorskip("phonopy")
    from phonopy.structure.atoms import PhonopyAtoms

    from mdhess.phonopy import build_phonopy

    uc = PhonopyAtoms(symbols=["Ar", "Kr", "Kr"], positions=TRI_R * 1.7, cell=TRI_CELL * 1.7, masses=[39.948, 83.8, 83.8])
    pot = mdhess.lennard_jones(sigma=TRI_POT.params["sigma"] * 1.7, epsilon=0.01, cutoff=4.5)
    ph = build_phonopy(pot, uc, [2, 3, 2], species={"Ar": 0, "Kr": 1}, primitive_matrix="P")
    q = np.array([[0.0, 0.0, 0.0], [0.5, 1 / 3, 0.0], [0.5, -1 / 3, 0.5], [0.0, 2 / 3, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mdhess.NotAtEquilibriumWarning)
        D = mdhess.dynamical_matrix(pot, uc.positions, uc.cell, q, masses=uc.masses, species=TRI_S)
    for k, qk in enumerate(q):
        ph.dynamical_matrix.run(qk)
        Dp = ph.dynamical_matrix.dynamical_matrix
        np.testing.assert_allclose(D[k], Dp, rtol=0, atol=1e-10 * np.abs(Dp).max())
        np.testing.assert_allclose(np.linalg.eigvalsh(D[k]), np.linalg.eigvalsh(Dp), rtol=0, atol=1e-10 * np.abs(Dp).max())


def test_phonopy_band_structure_equals_phonons():
    # phonopy's own band structure (run_band_structure) from mdhess fc of a 2x2x2 supercell of the
    # fcc conventional cell (q in steps of 1/2, commensurate with it; the cutoff 8.5 A exceeds half the
    # supercell, whose force constants sum every image), equals mdhess.phonons to 1e-10 (THz)
    pytest.importorskip("phonopy")
    from ase.build import bulk

    from mdhess.phonopy import build_phonopy

    uc = bulk("Ar", "fcc", a=A_AR, cubic=True)
    ph = build_phonopy(ARGON, uc, [2, 2, 2], primitive_matrix="P")
    path = [[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]], [[0.5, 0.5, 0.0], [0.5, 0.5, 0.5]], [[0.0, 0.5, 0.0], [0.5, 0.0, 0.5]]]
    ph.run_band_structure([np.linspace(a, b, 2) for a, b in path])
    q = np.concatenate(ph.band_structure.qpoints)
    f_ph = np.concatenate(ph.band_structure.frequencies)
    mine = mdhess.phonons(ARGON, uc.positions, uc.cell[:], masses=uc.get_masses(), units="metal")
    # phonopy's eV/A^2/amu -> THz factor (older CODATA) differs from mdhess's SI-2019 one by 1.2e-7:
    # compare sqrt(lambda) (signed) in phonopy's own units; phonopy's zero modes are noise (1e-8)
    from phonopy.physical_units import get_physical_units

    w_ph = f_ph / get_physical_units().DefaultToTHz
    lam = mine.eigenvalues(q)
    w = np.sign(lam) * np.sqrt(np.abs(lam))
    nonzero = np.abs(w_ph) > 1e-6 * np.abs(w_ph).max()
    assert nonzero.sum() == w.size - 3  # only the acoustic modes at Gamma are zero
    np.testing.assert_allclose(w[nonzero], w_ph[nonzero], rtol=0, atol=1e-10 * np.abs(w_ph).max())
    assert np.all(mine.frequencies(q)[~nonzero] == 0.0)


@pytest.mark.slow
def test_matches_ase_phonons_finite_differences(tmp_path, monkeypatch):
    # ASE's Phonons: central force differences (displacement delta) in a 5x5x5 supercell, cell-origin
    # phase. The difference is its O(delta^2) truncation error: it must shrink ~4x when delta halves
    # and stay below 1e-3 THz at delta = 0.01 A (argon's top frequency is ~2 THz)
    from ase.build import bulk
    from ase.phonons import Phonons
    from ase.units import _e, _hbar

    from mdhess.ase import MdhessCalculator

    monkeypatch.chdir(tmp_path)
    atoms = bulk("Ar", "fcc", a=A_AR)
    mine = mdhess.phonons(ARGON, atoms.positions, atoms.cell[:], masses=atoms.get_masses(), units="metal")
    bp = atoms.cell.bandpath("GXWKGLUWLK", npoints=40)
    ref = mine.frequencies(bp.kpts)
    errs = []
    for delta in (0.02, 0.01):
        p = Phonons(atoms, MdhessCalculator(ARGON), supercell=(5, 5, 5), delta=delta, name=f"ph{delta}")
        p.run()
        p.read(acoustic=False, symmetrize=0)
        e = p.band_structure(bp.kpts)  # eV
        f = np.sort(e, axis=1) * _e / (2 * np.pi * _hbar) * 1e-12  # THz
        errs.append(np.abs(f - ref).max())
    print("ASE Phonons max |diff| (THz) at delta 0.02, 0.01:", errs)
    assert errs[1] < 1e-3 and 3.0 < errs[0] / errs[1] < 5.0, errs


def test_dos_and_thermodynamics(lj_fcc):
    a0, ph = lj_fcc
    d = ph.dos(8, width=0.05, n_points=2000, fmin=-1.0, fmax=6.0)  # window beyond 8 widths
    assert abs(np.trapezoid(d.dos, d.frequency) - 3.0) < 1e-6  # 3 modes per cell
    # thermodynamics = the mesh average of the normal-mode formulas on the supercell's frequencies
    th = ph.thermodynamics(0.3, 4, hbar=0.05, gamma_centered=True)
    R = (np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) @ fcc_primitive(a0)).astype(float)
    nm = mdhess.normal_modes(mdhess.hessian(LJ, R, box=4 * fcc_primitive(a0)), units="lj", project="translations")
    ref = nm.thermodynamics(0.3, hbar=0.05)
    for k in ("zpe", "free_energy", "entropy", "heat_capacity"):
        assert abs(getattr(th, k) - getattr(ref, k) / 64) <= 1e-10 * abs(getattr(ref, k) / 64), k
    assert th.n_zero_skipped == 3
    with pytest.raises(mdhess.InputError, match="hbar"):
        ph.thermodynamics(0.3, 4)


def test_band_structure_and_plot(lj_fcc, tmp_path):
    _, ph = lj_fcc
    bs = ph.band_structure("GXKGL", 60)
    assert bs.frequencies.shape == (60, 3) and bs.special_labels == ["G", "X", "K", "G", "L"]
    np.testing.assert_allclose(bs.frequencies, ph.frequencies(bs.q), rtol=0, atol=0)
    from ase.cell import Cell

    bp = Cell(ph.cell).bandpath("GL", npoints=5)
    np.testing.assert_allclose(ph.band_structure(bp).frequencies, ph.band_structure(bp.kpts).frequencies)
    fig = ph.plot("GXL", 30, mesh=4, output=tmp_path / "ph.png")
    assert (tmp_path / "ph.png").stat().st_size > 1000 and len(fig.axes) == 2


def test_bad_input(lj_fcc):
    _, ph = lj_fcc
    cell = fcc_primitive(1.55)
    with pytest.raises(mdhess.InputError, match=r"dynamical_matrix\(q=...\).*\(2,\)"):
        mdhess.dynamical_matrix(LJ, np.zeros((1, 3)), cell, [0.0, 0.5])
    with pytest.raises(mdhess.InputError, match=r"\(nq, 3\).*\(2, 2\)"):
        ph.frequencies(np.zeros((2, 2)))
    with pytest.raises(mdhess.InputError, match="periodic"):
        mdhess.phonons(LJ, np.zeros((2, 3)) + [[0, 0, 0], [1.1, 0, 0]], None)
    with pytest.raises(mdhess.InputError, match="masses"):
        mdhess.phonons(LJ, np.zeros((1, 3)), cell, masses=[1.0, 2.0])
    with pytest.raises(mdhess.InputError, match="units"):
        mdhess.phonons(LJ, np.zeros((1, 3)), cell, units="si")
    with pytest.raises(mdhess.InputError, match="mesh"):
        ph.dos(0)
    R = np.array([[0.0, 0.0, 0.0], [0.5, 0.6, 0.1]])
    with pytest.warns(mdhess.NotAtEquilibriumWarning, match=r"largest force is [0-9.e+]+ .* on atom"):
        mdhess.phonons(LJ, R, fcc_primitive(1.55) * [[2], [1], [1]])


def test_cli_writes_bands_dos_and_png(tmp_path):
    # an HDF5 trajectory frame (--frame) of fcc argon in metal units; the file read back equals the API
    from ase.build import bulk
    from typer.testing import CliRunner

    from mdhess.cli import app
    from mdhess.io import read_phonons, write_minimal

    uc = bulk("Ar", "fcc", a=A_AR, cubic=True)  # 4 atoms (trajectory files hold at least 2)
    cell, R = uc.cell[:], uc.positions
    traj = tmp_path / "ar.h5"
    write_minimal(traj, np.stack([R, R + 0.1]), box=np.stack([cell, cell]), masses=[M_AR] * 4)
    out = tmp_path / "ph.h5"
    res = CliRunner().invoke(app, ["phonons", str(traj), "-p", "argon", "--frame", "-1", "--path", "GXM", "--npoints", "30",
                                   "--mesh", "4", "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    got = read_phonons(out)
    ref = mdhess.phonons(ARGON, R + 0.1, cell, masses=[M_AR] * 4, units="metal")
    np.testing.assert_allclose(got["bands"]["frequencies"], ref.frequencies(got["bands"]["q"]), rtol=0, atol=1e-12)
    assert got["bands"]["special_labels"] == ["G", "X", "M"] and got["attrs"]["frequency_unit"] == "THz"
    assert tuple(got["dos"]["mesh"]) == (4, 4, 4) and (tmp_path / "ph.png").stat().st_size > 1000
    res = CliRunner().invoke(app, ["phonons", str(traj), "-p", "argon", "-o", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output

"""Normal-mode analysis: exact small cases, ASE finite differences, solver agreement, units,
thermodynamics closed forms, DOS / plot / export, and every bad input."""

import functools

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse

import mdhess
from mdhess._units import UNIT_SYSTEMS
from mdhess.modes._shift_invert import cholmod_available

ARGON = {"sigma": 3.4, "epsilon": 0.0104}  # metal units: Angstrom, eV
M_AR = 39.948


def relax(pot, R0, box=None, species=None, gtol=1e-11):
    """Local minimum by BFGS on mdhess.energy / mdhess.forces; returns positions and max |F|."""

    def f(x):
        return mdhess.energy(pot, x.reshape(-1, 3), box=box, species=species)

    def g(x):
        return -np.asarray(mdhess.forces(pot, x.reshape(-1, 3), box=box, species=species)).ravel()

    res = scipy.optimize.minimize(
        f, np.asarray(R0, float).ravel(), jac=g, method="BFGS", options={"gtol": gtol, "maxiter": 5000}
    )
    return res.x.reshape(-1, 3), float(np.abs(g(res.x)).max())


def icosahedron13(scale):
    p = (1 + 5**0.5) / 2
    v = [[0, a, b * p] for a in (-1, 1) for b in (-1, 1)]
    v += [[a, b * p, 0] for a in (-1, 1) for b in (-1, 1)]
    v += [[b * p, 0, a] for a in (-1, 1) for b in (-1, 1)]
    v = np.array(v, float)
    return np.vstack([[0.0, 0.0, 0.0], v / np.linalg.norm(v[0]) * scale])


def fcc(n, a):
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    g = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    return ((g + base) * a).reshape(-1, 3), np.eye(3) * n * a


@functools.cache
def lj13():
    pot = mdhess.lennard_jones(**ARGON)
    R, gmax = relax(pot, icosahedron13(1.1 * ARGON["sigma"]), gtol=1e-12)
    return pot, R, gmax


@functools.cache
def random_cluster(n=30, seed=3):
    """A relaxed binary LJ cluster: no symmetry, so its spectrum has no degeneracies (relative
    gap 18% after mode 20)."""
    rng = np.random.default_rng(seed)
    pot = mdhess.lennard_jones(sigma=np.array([[1.0, 0.9], [0.9, 0.85]]), epsilon=1.0)
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] * 1.05
    R0 = g + rng.normal(0, 0.1, g.shape)
    species = (rng.random(n) < 0.3).astype(np.int32)
    R, gmax = relax(pot, R0, species=species, gtol=1e-10)
    masses = np.where(species == 1, 0.5, 1.0)
    return pot, R, species, masses, gmax


def sin_angle(V1, V2):
    """Largest principal angle between two subspaces (sine): ||P1 - P2||_2 for projectors."""
    Q1, Q2 = np.linalg.qr(V1)[0], np.linalg.qr(V2)[0]
    s = np.linalg.svd(Q1.T @ Q2, compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - s.min() ** 2)))


# -- exact small cases -------------------------------------------------------------------------
def test_dimer_at_minimum_omega2_is_k_over_mu():
    sigma, eps, m1, m2 = 1.3, 0.7, 2.0, 5.0
    pot = mdhess.lennard_jones(sigma=sigma, epsilon=eps)
    r0 = 2 ** (1 / 6) * sigma
    R = np.array([[0.1, 0.2, 0.3], [0.1 + r0, 0.2, 0.3]])
    k = 72 * eps / (2 ** (1 / 3) * sigma**2)  # phi''(r_min) of 4 eps [(s/r)^12 - (s/r)^6]
    mu = m1 * m2 / (m1 + m2)
    for positions in (None, R):  # rotations found numerically, or projected
        nm = mdhess.normal_modes(mdhess.hessian(pot, R), [m1, m2], positions=positions)
        assert nm.n_zero == 5
        assert nm.eigenvalues[-1] == pytest.approx(k / mu, rel=1e-12)
        assert np.all(np.abs(nm.eigenvalues[:5]) <= 1e-12 * k / mu)
    assert nm.n_projected == 5 and "2 rotations" in nm.projected
    # the stretch: relative displacement along the bond, centre of mass fixed
    d = nm.displacements[-1]
    assert abs(abs(d[0, 0]) / abs(d[1, 0]) - m2 / m1) < 1e-10 and np.abs(d[:, 1:]).max() < 1e-10


def test_lj13_against_ase_finite_differences(tmp_path):
    ase = pytest.importorskip("ase")
    from ase.calculators.lj import LennardJones
    from ase.vibrations import Vibrations

    pot, R, gmax = lj13()
    assert gmax < 1e-9
    nm = mdhess.normal_modes(mdhess.hessian(pot, R), np.full(13, M_AR), positions=R, units="metal")
    assert nm.n_projected == 6 and nm.n_zero == 6 and nm.n_imaginary == 0
    mine = np.sort(nm.frequencies_in("meV"))[6:]
    err = {}
    for delta in (0.01, 0.005):
        at = ase.Atoms("Ar13", positions=R)
        at.calc = LennardJones(rc=100.0, **ARGON)  # shifted at 100 A: forces exact LJ
        vib = Vibrations(at, name=str(tmp_path / f"vib{delta}"), delta=delta, nfree=2)
        vib.run()
        theirs = np.sort(np.real(vib.get_energies()))[6:] * 1e3  # meV
        err[delta] = np.abs(theirs - mine).max() / mine.max()
    # central differences: error ~ delta^2 (measured 1.6e-4 relative at 0.01 A)
    assert err[0.01] < 5e-4
    assert err[0.005] < err[0.01] / 2.5


def test_fcc_crystal_exactly_three_zero_modes():
    pot = mdhess.lennard_jones(cutoff=2.5)
    R, box = fcc(3, 1.55)
    H = mdhess.hessian(pot, R, box=box)
    nm = mdhess.normal_modes(H, positions=R, box=box)
    assert nm.n_projected == 3 and nm.projected == "translations"
    assert nm.n_zero == 3 and nm.n_imaginary == 0
    # without projection the translations are still the only (numerical) zero modes
    assert mdhess.normal_modes(H, project="none").n_zero == 3


def test_saddle_point_gives_imaginary_modes():
    """A linear LJ trimer at its stationary spacing is a saddle: bending is unstable."""
    pot = mdhess.lennard_jones()

    def dphi(r):
        return -48 / r**13 + 24 / r**7

    d = scipy.optimize.brentq(lambda r: dphi(r) + dphi(2 * r), 1.0, 1.2)
    R = np.array([[-d, 0, 0], [0, 0, 0], [d, 0, 0]])
    assert np.abs(np.asarray(mdhess.forces(pot, R))).max() < 1e-12
    nm = mdhess.normal_modes(mdhess.hessian(pot, R), positions=R)
    assert nm.n_projected == 5  # linear: 3 translations + 2 rotations
    assert nm.n_imaginary == 2  # the degenerate bend
    f = nm.frequencies
    assert np.all(f[:2] < 0) and np.all(f[nm.imaginary_mask] < 0)
    assert nm.thermodynamics(1.0, hbar=1.0).n_imaginary_skipped == 2
    # partial spectra put the imaginary modes first, then the zero modes (k - 5 = 1 vibrational
    # mode would miss one of the two imaginary ones: normal_modes recomputes with more)
    for k in (1, 3, 6):
        part = mdhess.normal_modes(mdhess.hessian(pot, R), positions=R, k=k)
        np.testing.assert_allclose(part.eigenvalues, nm.eigenvalues[:k], atol=1e-12)


# -- solvers agree --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "solver,layout",
    [
        ("lobpcg", "bsr"),
        ("shift-invert", "bsr"),
        ("lobpcg", "stored"),
        ("lobpcg", "matrix_free"),
        ("lobpcg", "dense"),
        ("lobpcg", "bsr_no_positions"),
    ],
)
def test_partial_solvers_match_dense_free_cluster(solver, layout):
    pot, R, species, masses, gmax = random_cluster()
    assert gmax < 1e-6
    ref = mdhess.normal_modes(mdhess.hessian(pot, R, species=species), masses, positions=R, solver="dense")
    H = {
        "bsr": lambda: mdhess.hessian(pot, R, species=species, format="bsr"),
        "bsr_no_positions": lambda: mdhess.hessian(pot, R, species=species, format="bsr"),
        "dense": lambda: mdhess.hessian(pot, R, species=species),
        "stored": lambda: mdhess.hvp(pot, R, species=species),
        "matrix_free": lambda: mdhess.hvp(pot, R, species=species, store_blocks=False),
    }[layout]()
    positions = None if layout == "bsr_no_positions" else R
    project = "rigid" if positions is None else "auto"
    if positions is None:  # rotations need positions; give them only to the projection
        nm = mdhess.normal_modes(H, masses, k=20, solver=solver, tol=1e-13, project="translations")
        ref = mdhess.normal_modes(
            mdhess.hessian(pot, R, species=species), masses, solver="dense", project="translations"
        )
    else:
        nm = mdhess.normal_modes(
            H, masses, k=20, solver=solver, positions=positions, project=project, tol=1e-13
        )
    assert nm.solver == solver
    w0, w1 = ref.eigenvalues[:20], nm.eigenvalues
    # 1e-8 relative; near-zero unprojected rotations (no positions) to 1e-10 of the scale
    assert np.all(np.abs(w1 - w0) <= np.maximum(1e-8 * np.abs(w0), 1e-10 * ref.scale))
    # same eigenspaces: the non-zero block, and (where the gap allows) the whole 20
    gap = (ref.eigenvalues[20] - ref.eigenvalues[19]) / ref.eigenvalues[19]
    assert sin_angle(ref.vectors[:, :20], nm.vectors) < 1e-6 / min(gap, 1.0)
    assert nm.n_zero == ref.n_zero


def test_lobpcg_periodic_crystal_matches_dense():
    pot = mdhess.lennard_jones(cutoff=2.5)
    R, box = fcc(4, 1.56)
    R = R + np.random.default_rng(0).normal(0, 0.02, R.shape)
    H = mdhess.hessian(pot, R, box=box)
    ref = mdhess.normal_modes(H, positions=R, box=box, solver="dense")
    assert ref.n_imaginary == 0
    ev = ref.eigenvalues
    k = 15 + int(np.argmax((ev[16:26] - ev[15:25]) / ev[15:25])) + 1  # a k with a gap after it
    for solver, Hin in [
        ("lobpcg", mdhess.hessian(pot, R, box=box, format="bsr")),
        ("shift-invert", mdhess.hessian(pot, R, box=box, format="bsr")),
        ("lobpcg", mdhess.hvp(pot, R, box=box)),
    ]:
        nm = mdhess.normal_modes(Hin, positions=R, box=box, k=k, solver=solver, tol=1e-13)
        assert nm.n_zero == 3
        assert np.abs(nm.eigenvalues[3:] - ev[3:k]).max() <= 1e-8 * ev[3]
        gap = (ev[k] - ev[k - 1]) / ev[k - 1]
        assert sin_angle(ref.vectors[:, :k], nm.vectors) < 1e-6 / gap


# default run: one extreme scale; the others in the slow set
@pytest.mark.parametrize("units_scale", [pytest.param(1.0, marks=pytest.mark.slow), pytest.param(1e30, marks=pytest.mark.slow), 1e-30])
def test_lobpcg_elastic_network_matches_dense(units_scale):
    """Sparse networks take the multiplicative preconditioner (float32 Chebyshev smoothing, rotating
    coarse nodes): eigenvalues still to 1e-8 and the same eigenspace, at any scale of the matrix
    (1e+-30: the float32 sweeps work on a rescaled copy, no overflow or underflow)."""
    rng = np.random.default_rng(5)
    g = np.stack(np.meshgrid(*[np.arange(7)] * 3, indexing="ij"), -1).reshape(-1, 3)
    R = g * 3.8 + rng.normal(0, 0.6, g.shape)
    net = mdhess.elastic_network(R, cutoff=7.0, k=1.0)
    H = mdhess.hessian(net, R, format="bsr") * units_scale
    assert H.nnz / H.shape[0] <= 120  # the sparse branch
    masses = rng.uniform(12.0, 16.0, len(R))
    ref = mdhess.normal_modes(H.toarray(), masses, positions=R, solver="dense")
    nm = mdhess.normal_modes(H, masses, k=26, positions=R, solver="lobpcg")
    assert "float32 Chebyshev" in nm.info["preconditioner"] and "rotating" in nm.info["preconditioner"]
    assert nm.n_zero == ref.n_zero == 6
    w0, w1 = ref.eigenvalues[6:26], nm.eigenvalues[6:]
    assert np.all(np.abs(w1 - w0) <= 1e-8 * np.abs(w0))
    gap = (ref.eigenvalues[26] - ref.eigenvalues[25]) / ref.eigenvalues[25]
    assert sin_angle(ref.vectors[:, :26], nm.vectors) < 1e-4 / min(gap, 1.0)


def test_lobpcg_periodic_elastic_network_matches_dense():
    """The same preconditioner on a periodic network (periodic coarse grid, rotating nodes about
    wrapped node positions): 3 zero modes, the next 20 to 1e-8, the same eigenspace."""
    rng = np.random.default_rng(7)
    g = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    box = np.diag([6 * 3.8, 6 * 3.8, 6 * 3.8]) + np.array([[0, 0, 0], [1.5, 0, 0], [0, 0, 0]])  # triclinic
    R = (g * 3.8 + rng.normal(0, 0.5, g.shape)) @ (np.linalg.inv(np.diag(np.diag(box))) @ box)
    net = mdhess.elastic_network(R, cutoff=7.0, k=1.0, box=box)
    H = mdhess.hessian(net, R, box=box, format="bsr")
    assert H.nnz / H.shape[0] <= 120
    ref = mdhess.normal_modes(H.toarray(), positions=R, box=box, solver="dense")
    nm = mdhess.normal_modes(H, k=23, positions=R, box=box, solver="lobpcg")
    assert "rotating" in nm.info["preconditioner"]
    assert nm.n_zero == ref.n_zero == 3
    w0, w1 = ref.eigenvalues[3:23], nm.eigenvalues[3:]
    assert np.all(np.abs(w1 - w0) <= 1e-8 * np.abs(w0))
    gap = (ref.eigenvalues[23] - ref.eigenvalues[22]) / ref.eigenvalues[22]
    assert sin_angle(ref.vectors[:, :23], nm.vectors) < 1e-4 / min(gap, 1.0)


def jittered_simple_cubic(n_side, seed=0):
    """LJ on a jittered simple-cubic lattice (spacing 1.12 sigma): mechanically unstable (shear
    softens), far from a stationary point: many negative eigenvalues, rotations not null modes."""
    g = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.12
    return g + np.random.default_rng(seed).normal(0, 0.02, g.shape)


@pytest.mark.parametrize("cutoff", [pytest.param(1.5, marks=pytest.mark.slow), None])  # 1.5: 18 s, slow set
def test_lobpcg_unstable_unrelaxed_structure_matches_dense(cutoff):
    """The lowest (most negative) modes of an indefinite Hessian at a non-stationary structure.
    LOBPCG used to stall here (0 of 20 pairs after 1000 iterations): its residual was not
    projected on the complement of the rotations (null vectors only at a stationary point), and
    its block-Jacobi / coarse parts were indefinite. Now the preconditioner is built from
    A - sigma I with sigma below the spectrum, and the pairs are those of Q A Q, as dense gives."""
    R = jittered_simple_cubic(7 if cutoff else 5)
    pot = mdhess.lennard_jones(cutoff=cutoff)
    H = mdhess.hessian(pot, R, format="bsr") if cutoff else np.asarray(mdhess.hessian(pot, R))
    ref = mdhess.normal_modes(H.toarray() if cutoff else H, k=26, positions=R, solver="dense")
    # the 26 lowest of the projected spectrum are all imaginary: no zero mode among them
    assert ref.n_projected == 6 and ref.n_zero == 0 and np.all(ref.eigenvalues < 0)
    dense_H = H.toarray() if cutoff else H
    for positions, project in ((R, "auto"), (None, "translations")):
        nm = mdhess.normal_modes(H, k=26, positions=positions, project=project, solver="lobpcg")
        assert nm.info["converged"] == 26, nm.info
        # the coarse matrix is indefinite (the soft shears are smooth): shifted. Block Jacobi alone
        # has positive blocks here (nearest-neighbour repulsion), so it stays as it is
        assert ("sigma" in nm.info["preconditioner"]) == (positions is not None)
        want = ref if project == "auto" else mdhess.normal_modes(dense_H, k=26, project=project)
        assert np.all(np.abs(nm.eigenvalues - want.eigenvalues) <= 1e-8 * np.abs(want.eigenvalues))


FACTORS = ["superlu"] + (["cholmod"] if cholmod_available() else [])
# the unstable-structure search is run with one factorisation in the default run (CHOLMOD when
# installed, the test extra has it), the other in the slow set
SEARCH_FACTORS = [pytest.param(f, marks=pytest.mark.slow) if f != FACTORS[-1] else f for f in FACTORS]


@pytest.mark.parametrize("factor", SEARCH_FACTORS)
def test_shift_invert_unstable_structure_finds_the_lowest(factor, monkeypatch):
    """Shift-invert returns the eigenvalues NEAREST sigma. It used to keep sigma just below zero at
    an unstable structure and return modes near zero (-0.62 for a lowest of -11.8, measured): a
    silently wrong "lowest". Now the factor's inertia shows eigenvalues below sigma, sigma moves
    below the spectrum, and the pairs are those of Q A Q (Woodbury-projected inverse: rotations
    are not null vectors here) as the dense solver gives, with and without rotations."""
    import mdhess.modes._shift_invert as si

    monkeypatch.setattr(si, "cholmod_available", lambda: factor == "cholmod")
    R = jittered_simple_cubic(7)
    H = mdhess.hessian(mdhess.lennard_jones(cutoff=1.5), R, format="bsr")
    for positions, project in ((R, "auto"), (None, "translations")):
        want = mdhess.normal_modes(H.toarray(), k=26, positions=positions, project=project, solver="dense")
        assert np.all(want.eigenvalues < 0)
        nm = mdhess.normal_modes(H, k=26, positions=positions, project=project, solver="shift-invert")
        assert nm.info["factorization"] == factor and nm.info["sigma_moved_below_spectrum"]
        assert nm.info["sigma"] < want.eigenvalues[0]
        # rotations are not invariant here: the Woodbury correction; translations always are
        assert nm.info["projection"] == ("woodbury" if positions is not None else "commuting")
        assert np.all(np.abs(nm.eigenvalues - want.eigenvalues) <= 1e-8 * np.abs(want.eigenvalues))
        gap = (want.eigenvalues[26 - 1] - want.eigenvalues[26 - 2]) / abs(want.eigenvalues[0])
        assert sin_angle(want.vectors[:, :25], nm.vectors[:, :25]) < 1e-6 / min(abs(gap), 1.0)


@pytest.mark.parametrize("factor", FACTORS)
def test_shift_invert_sigma_at_an_eigenvalue_is_a_clear_error(factor, monkeypatch):
    import mdhess.modes._shift_invert as si

    monkeypatch.setattr(si, "cholmod_available", lambda: factor == "cholmod")
    d = np.repeat(np.arange(1.0, 21.0), 3)  # 20 "atoms", eigenvalues 1..20 (each 3 times)
    H = scipy.sparse.diags(d).tocsr()
    with pytest.raises(mdhess.InputError, match=r"sigma=5\.0.*singular"):
        mdhess.normal_modes(H, k=4, project="none", solver="shift-invert", sigma=5.0)
    nm = mdhess.normal_modes(H, k=4, project="none", solver="shift-invert", sigma=5.2)
    np.testing.assert_allclose(np.sort(nm.eigenvalues), [5.0, 5.0, 5.0, 6.0], rtol=1e-12)


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("units_scale", [1.0, 1e30, 1e-30])
def test_shift_invert_any_scale(units_scale, factor, monkeypatch):
    """ARPACK's convergence test has an absolute floor (eps^(2/3) on the inverted operator's Ritz
    values): on a Hessian in units of 1e30 it stopped at once, 24% off (measured). The solve now
    works on A / scale; the modes agree with dense to 1e-8 at any scale, masses included."""
    import mdhess.modes._shift_invert as si

    monkeypatch.setattr(si, "cholmod_available", lambda: factor == "cholmod")
    rng = np.random.default_rng(5)
    g = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    R = g * 3.8 + rng.normal(0, 0.6, g.shape)
    H = mdhess.hessian(mdhess.elastic_network(R, cutoff=7.0), R, format="bsr") * units_scale
    masses = rng.uniform(12.0, 16.0, len(R))
    ref = mdhess.normal_modes(H.toarray(), masses, k=27, positions=R, solver="dense")
    nm = mdhess.normal_modes(H, masses, k=26, positions=R, solver="shift-invert")
    assert nm.info["factorization"] == factor and nm.n_zero == ref.n_zero == 6
    assert np.all(np.abs(nm.eigenvalues[6:] - ref.eigenvalues[6:26]) <= 1e-8 * ref.eigenvalues[6:26])
    assert nm.info["sigma"] < 0 and abs(nm.info["sigma"]) < 1e-5 * ref.scale
    gap = (ref.eigenvalues[26] - ref.eigenvalues[25]) / ref.eigenvalues[25]
    assert sin_angle(ref.vectors[:, :26], nm.vectors) < 1e-6 / min(gap, 1.0)


def test_shift_invert_inertia_and_explicit_sigma():
    """SuperLU without row pivoting is K = L D L^T: the count of negative pivots is the number of
    eigenvalues below sigma (Sylvester), compared with LAPACK; CHOLMOD's Cholesky succeeds exactly
    when K is positive definite. A sigma the caller gives is kept: the modes nearest it."""
    from mdhess.modes._shift_invert import factor_shifted

    R = jittered_simple_cubic(5)
    H = mdhess.hessian(mdhess.lennard_jones(cutoff=1.5), R, format="bsr").tocsr()
    ev = np.linalg.eigvalsh(H.toarray())
    for sigma in (ev[0] - 0.5, -1e-6, -3.0, 0.5, ev[40] + 0.5 * (ev[41] - ev[40])):
        f = factor_shifted(H, sigma, cholmod=False)
        assert f.n_below == np.count_nonzero(ev < sigma)
        assert f.definite == (f.n_below == 0)
        if "cholmod" in FACTORS:
            g = factor_shifted(H, sigma, cholmod=True)
            assert g.definite == (sigma < ev[0]) and g.backend == ("cholmod" if sigma < ev[0] else "superlu")
        # solves backward stable (no pivoting: still ~1e-15 here), also close to an eigenvalue
        b = np.random.default_rng(0).normal(size=H.shape[0])
        x = f.solve(b)
        K = H - sigma * scipy.sparse.identity(H.shape[0])
        assert np.linalg.norm(K @ x - b) <= 1e-12 * np.abs(ev - sigma).max() * np.linalg.norm(x)
    sigma = 0.3
    nm = mdhess.normal_modes(H, k=8, project="translations", solver="shift-invert", sigma=sigma)
    ref = mdhess.normal_modes(H.toarray(), project="translations", solver="dense")
    assert nm.info["sigma"] == sigma and nm.info["n_below_sigma"] == np.count_nonzero(ev < sigma)
    assert "sigma_moved_below_spectrum" not in nm.info
    lam = ref.eigenvalues[ref.eigenvalues != 0.0]  # the projected translations are exactly 0
    got = nm.eigenvalues[nm.eigenvalues != 0.0]
    nearest = np.sort(lam[np.argsort(np.abs(lam - sigma))[: got.size]])
    assert got.size >= 5 and np.all(np.abs(got - nearest) <= 1e-8 * np.abs(nearest))


def test_auto_solver_choice_is_reported():
    pot, R, species, masses, _ = random_cluster()
    nm = mdhess.normal_modes(mdhess.hessian(pot, R, species=species, format="bsr"), masses, positions=R, k=10)
    assert nm.solver == "dense"  # 90 degrees of freedom: dense
    assert "dense" in nm.summary()


@pytest.mark.slow  # heavy solver comparison (issue 17: default run in minutes); test_auto_solver_choice_is_reported stays
def test_auto_solver_thresholds_and_agreement(monkeypatch):
    """Above 1200 degrees of freedom with positions "auto" runs LOBPCG (the measured crossover);
    without positions (block Jacobi only) it stays dense up to 2000; both give the same modes.
    (Without CHOLMOD: with it, this sparse free-space network takes shift-invert, tested below.)"""
    import mdhess.modes._nma as nma
    from mdhess.modes._nma import DENSE_MAX, DENSE_MAX_NO_POSITIONS

    monkeypatch.setattr(nma, "cholmod_available", lambda: False)

    n = DENSE_MAX // 3 + 20  # 1260 degrees of freedom
    assert 3 * n <= DENSE_MAX_NO_POSITIONS
    g = np.stack(np.meshgrid(*[np.arange(11)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    R = g * 3.8 + np.random.default_rng(5).normal(0, 0.4, g.shape)
    H = mdhess.hessian(mdhess.elastic_network(R, cutoff=7.5), R, format="bsr")
    with_pos = mdhess.normal_modes(H, k=16, positions=R)
    without = mdhess.normal_modes(H, k=16, project="translations")
    assert with_pos.solver == "lobpcg" and without.solver == "dense"
    # LOBPCG's cost grows as k^2: more than 3N/30 modes go to dense
    k_max = H.shape[0] // nma.DENSE_K_FRACTION
    assert mdhess.normal_modes(H, k=k_max + 1, positions=R).solver == "dense"
    ref = mdhess.normal_modes(H, k=16, positions=R, solver="dense")
    w0, w1 = ref.eigenvalues[6:], with_pos.eigenvalues[6:]
    assert with_pos.n_zero == ref.n_zero == 6
    assert np.all(np.abs(w1 - w0) <= 1e-8 * np.abs(w0))  # the accuracy for partial solvers
    # a full matrix (all pairs) of the same size stays dense: each LOBPCG product would cost n^2
    from mdhess.modes._input import hessian_input
    from mdhess.modes._nma import DENSE_FILL, DENSE_MAX_FULL

    Rc = jittered_simple_cubic(8)[: DENSE_MAX // 3 + 20]
    Hc = np.asarray(mdhess.hessian(mdhess.lennard_jones(), Rc))
    assert hessian_input(Hc).fill() > DENSE_FILL and Hc.shape[0] <= DENSE_MAX_FULL
    assert hessian_input(H).fill() <= DENSE_FILL
    assert mdhess.normal_modes(Hc, k=16, positions=Rc).solver == "dense"


@pytest.mark.slow  # heavy solver comparison (issue 17: default run in minutes); shift-invert with CHOLMOD stays in test_shift_invert_unstable_structure_finds_the_lowest
def test_auto_shift_invert_with_cholmod(monkeypatch):
    """With CHOLMOD installed, "auto" takes shift-invert for a sparse matrix in free space with
    few blocks a row (the measured 2-3x over LOBPCG); periodic boxes, dense rows, many modes, the
    highest modes and matrix-free operators keep their solvers. Same modes as dense to 1e-8."""
    import mdhess.modes._nma as nma

    monkeypatch.setattr(nma, "cholmod_available", lambda: True)
    g = np.stack(np.meshgrid(*[np.arange(8)] * 3, indexing="ij"), -1).reshape(-1, 3)
    R = g * 3.8 + np.random.default_rng(3).normal(0, 0.4, g.shape)  # 512 beads, 1536 DOF
    net = mdhess.elastic_network(R, cutoff=7.5)
    H = mdhess.hessian(net, R, format="bsr")
    assert H.nnz <= 3 * nma.SI_MAX_BLOCKS * H.shape[0]
    ref = mdhess.normal_modes(H.toarray(), k=27, positions=R, solver="dense")
    nm = mdhess.normal_modes(H, k=26, positions=R)
    assert nm.solver == "shift-invert"
    if cholmod_available():
        assert nm.info["factorization"] == "cholmod"
    assert nm.info["projection"] == "commuting"  # a network at rest: rotations are null vectors
    assert nm.n_zero == ref.n_zero == 6
    assert np.all(np.abs(nm.eigenvalues[6:] - ref.eigenvalues[6:26]) <= 1e-8 * ref.eigenvalues[6:26])
    gap = (ref.eigenvalues[26] - ref.eigenvalues[25]) / ref.eigenvalues[25]
    assert sin_angle(ref.vectors[:, :26], nm.vectors) < 1e-6 / min(gap, 1.0)
    box = np.eye(3) * 8 * 3.8
    Hp = mdhess.hessian(mdhess.elastic_network(R, cutoff=7.5, box=box), R, box=box, format="bsr")
    assert mdhess.normal_modes(Hp, k=23, positions=R, box=box).solver == "lobpcg"
    dense_in = mdhess.normal_modes(H.toarray(), k=26, positions=R)  # the same matrix as an array
    assert dense_in.solver == "shift-invert"
    np.testing.assert_allclose(dense_in.eigenvalues, nm.eigenvalues, rtol=1e-10, atol=1e-12 * ref.scale)
    n3 = H.shape[0]  # many modes: shift-invert up to 3N/10, then dense (its cost barely grows with k)
    assert mdhess.normal_modes(H, k=n3 // nma.SI_K_FRACTION, positions=R).solver == "shift-invert"
    assert mdhess.normal_modes(H, k=n3 // nma.SI_K_FRACTION + 1, positions=R).solver == "dense"
    assert mdhess.normal_modes(H, k=26, which="highest", positions=R).solver == "lobpcg"
    assert mdhess.normal_modes(mdhess.hvp(net, R), k=26, positions=R).solver == "lobpcg"
    Hl = mdhess.hessian(mdhess.lennard_jones(sigma=3.4, epsilon=0.01, cutoff=12.0), R, format="bsr")
    assert Hl.nnz > 3 * nma.SI_MAX_BLOCKS * Hl.shape[0]
    assert mdhess.normal_modes(Hl, k=26, positions=R, solver="auto").solver == "lobpcg"


@pytest.mark.slow  # peer comparison, 13 s; the ANM blocks are checked in test_core (elastic network)
def test_network_modes_match_prody():
    """Peer check of the whole path (elastic_network -> BSR -> normal_modes: "auto", and
    shift-invert and LOBPCG by name) against ProDy's ANM: the same 20 lowest non-zero eigenvalues
    to 1e-8 relative (both exact up to the solvers' tolerances: ProDy's LAPACK, mdhess's 1e-10)."""
    prody = pytest.importorskip("prody")
    prody.confProDy(verbosity="none")
    g = np.stack(np.meshgrid(*[np.arange(7)] * 3, indexing="ij"), -1).reshape(-1, 3)
    R = g * 3.8 + np.random.default_rng(11).normal(0, 0.5, g.shape)  # 343 beads
    H = mdhess.hessian(mdhess.elastic_network(R, cutoff=8.5, k=1.0), R, format="bsr")
    anm = prody.ANM("grid")
    anm.buildHessian(R, cutoff=8.5, gamma=1.0)
    anm.calcModes(n_modes=20)
    ref = np.sort(anm.getEigvals())
    for solver in ("auto", "shift-invert", "lobpcg"):
        nm = mdhess.normal_modes(H, k=26, positions=R, solver=solver)
        assert nm.n_zero == 6
        assert np.all(np.abs(nm.eigenvalues[6:] - ref) <= 1e-8 * ref), solver


def test_highest_modes():
    pot, R, species, masses, _ = random_cluster()
    H = mdhess.hessian(pot, R, species=species)
    ref = mdhess.normal_modes(H, masses, positions=R)
    for solver in ("dense", "lobpcg", "shift-invert"):
        nm = mdhess.normal_modes(
            scipy.sparse.bsr_matrix(np.asarray(H), blocksize=(3, 3)),
            masses,
            positions=R,
            k=5,
            which="highest",
            solver=solver,
            tol=1e-13,
        )
        np.testing.assert_allclose(nm.eigenvalues, ref.eigenvalues[-5:], rtol=1e-8)


# -- units ----------------------------------------------------------------------------------------
def test_unit_conversions_against_ase_units():
    u = pytest.importorskip("ase.units").create_units("2018")  # CODATA 2018, as mdhess

    H = np.diag([0.0, 0.0, 0.0, 1.0, 4.0, 9.0])  # eigenvalues 1, 4, 9 (mass 1)
    nm = mdhess.normal_modes(H, project="none", units="metal")
    omega = np.sqrt([1.0, 4.0, 9.0]) * np.sqrt(u._e / (1e-20 * u._amu))  # rad/s
    np.testing.assert_allclose(nm.frequencies_in("rad/s")[3:], omega, rtol=1e-12)
    np.testing.assert_allclose(nm.frequencies[3:], omega / (2 * np.pi) / 1e12, rtol=1e-12)
    np.testing.assert_allclose(nm.frequencies_in("cm^-1")[3:], omega / (2 * np.pi) / (100 * u._c), rtol=1e-12)
    np.testing.assert_allclose(nm.frequencies_in("meV")[3:], 1e3 * u._hbar * omega / u._e, rtol=1e-12)
    # sqrt(eV / (A^2 amu)) = 15.6333 THz (ASE, phonopy's VaspToTHz)
    assert nm.frequencies[3] == pytest.approx(15.633302, rel=1e-6)
    # "real": kcal/mol per A^2 per amu; omega in rad/fs = rad/s * 1e-15
    r = mdhess.normal_modes(H, project="none", units="real")
    np.testing.assert_allclose(
        r.omega[3:], np.sqrt([1.0, 4.0, 9.0]) * np.sqrt(4184 / u._Nav / (1e-20 * u._amu)) * 1e-15, rtol=1e-12
    )
    lj = mdhess.normal_modes(H, project="none", units="lj")
    np.testing.assert_allclose(lj.frequencies[3:], np.sqrt([1.0, 4.0, 9.0]) / (2 * np.pi))
    with pytest.raises(mdhess.InputError, match="unit"):
        lj.frequencies_in("THz")
    assert set(mdhess.UNIT_SYSTEMS) == {"lj", "metal", "real"}


# -- thermodynamics ---------------------------------------------------------------------------------
def oscillators():
    lam = np.array([0.0, 0.0, 0.0, -0.5, 0.3, 1.0, 2.0, 7.0, 15.0])
    return lam, mdhess.normal_modes(np.diag(lam), project="none", units="metal")


@pytest.mark.parametrize("T", [50.0, 300.0, 3000.0])
def test_quantum_thermodynamics_closed_forms(T):
    u = pytest.importorskip("ase.units").create_units("2018")  # CODATA 2018, as mdhess

    lam, nm = oscillators()
    th = nm.thermodynamics(T)
    assert (th.n_modes_used, th.n_zero_skipped, th.n_imaginary_skipped) == (5, 3, 1)
    hw = u._hbar * np.sqrt(lam[4:] * u._e / (1e-20 * u._amu)) / u._e  # eV
    kT = u._k * T / u._e
    x = hw / kT
    assert th.zpe == pytest.approx(np.sum(hw / 2), rel=1e-7)
    assert th.free_energy == pytest.approx(np.sum(hw / 2 + kT * np.log(1 - np.exp(-x))), rel=1e-7)
    assert th.internal_energy == pytest.approx(np.sum(hw / 2 + hw / (np.exp(x) - 1)), rel=1e-7)
    kB = u._k / u._e
    assert th.entropy == pytest.approx(
        kB * np.sum(x / (np.exp(x) - 1) - np.log(1 - np.exp(-x))), rel=1e-7, abs=1e-300
    )
    assert th.heat_capacity == pytest.approx(
        kB * np.sum(x**2 * np.exp(x) / (np.exp(x) - 1) ** 2), rel=1e-7, abs=1e-300
    )
    # thermodynamic consistency: F = U - T S, S = -dF/dT
    assert th.free_energy == pytest.approx(th.internal_energy - T * th.entropy, rel=1e-9, abs=1e-12)
    h = 1e-3 * T
    dF = (nm.thermodynamics(T + h).free_energy - nm.thermodynamics(T - h).free_energy) / (2 * h)
    assert -dF == pytest.approx(th.entropy, rel=1e-5, abs=1e-12)


def test_classical_limit_and_reduced_units():
    lam, nm = oscillators()
    hi = nm.thermodynamics(1e7)
    cl = nm.thermodynamics(1e7, quantum=False)
    assert hi.heat_capacity == pytest.approx(cl.heat_capacity, rel=1e-6)
    assert cl.heat_capacity == pytest.approx(5 * UNIT_SYSTEMS["metal"].k_B)
    assert hi.entropy == pytest.approx(cl.entropy, rel=1e-6)
    lj = mdhess.normal_modes(np.diag(lam), project="none", units="lj")
    th = lj.thermodynamics(2.0, quantum=False, hbar=1.0)
    w = np.sqrt(lam[4:])
    assert th.free_energy == pytest.approx(np.sum(2.0 * np.log(w / 2.0)))
    assert th.heat_capacity == pytest.approx(5.0)
    with pytest.raises(mdhess.InputError, match="hbar"):
        lj.thermodynamics(1.0)
    with pytest.raises(mdhess.InputError, match="T="):
        nm.thermodynamics(-1.0)


# -- DOS, plot, export, participation ------------------------------------------------------------
def test_dos_plot_and_xyz_export(tmp_path):
    ase_io = pytest.importorskip("ase.io")
    pot, R, _ = lj13()
    nm = mdhess.normal_modes(mdhess.hessian(pot, R), np.full(13, M_AR), positions=R, units="metal")
    for width in (None, 0.05):
        nu, g = nm.dos(bins=400, width=width, fmin=-0.5, fmax=3.0)
        assert np.trapezoid(g, nu) == pytest.approx(33, rel=1e-3)
    png = nm.plot_dos(tmp_path / "dos.png", width=0.05)
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    path = nm.write_xyz(tmp_path / "mode.xyz", -1, amplitude=0.2, frames=8, symbols="Ar")
    frames = ase_io.read(path, index=":")
    assert len(frames) == 8 and all(len(f) == 13 for f in frames)
    disp = np.array([f.positions - R for f in frames])
    assert np.abs(np.linalg.norm(disp, axis=2).max() - 0.2) < 1e-6
    np.testing.assert_allclose(frames[0].positions, R, atol=1e-7)


def test_participation_ratio():
    pot, R, _ = lj13()
    nm = mdhess.normal_modes(mdhess.hessian(pot, R), positions=R)
    pr = nm.participation_ratio
    assert pr.shape == (39,) and np.all((pr > 1 / 13 - 1e-12) & (pr <= 1 + 1e-12))
    # a pure translation moves every (equal-mass) atom alike
    assert nm.participation_ratio[np.flatnonzero(nm.zero_mask)[0]] == pytest.approx(1.0)


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_names_the_argument():
    pot, R, _ = lj13()
    H = np.asarray(mdhess.hessian(pot, R))
    E = mdhess.InputError
    with pytest.raises(E, match=r"masses=.*shape \(13,\)"):
        mdhess.normal_modes(H, np.ones(12))
    with pytest.raises(E, match="masses=.*> 0"):
        mdhess.normal_modes(H, np.r_[np.ones(12), -1.0])
    with pytest.raises(E, match="masses=.*> 0"):
        mdhess.normal_modes(H, np.r_[np.ones(12), 0.0])
    with pytest.raises(E, match=r"k=.*1\.\.39"):
        mdhess.normal_modes(H, k=40)
    with pytest.raises(E, match="k="):
        mdhess.normal_modes(H, k=0)
    with pytest.raises(E, match="H=.*square"):
        mdhess.normal_modes(H[:, :-3])
    with pytest.raises(E, match="H=.*multiple of 3"):
        mdhess.normal_modes(H[:-1, :-1])
    bad = H.copy()
    bad[4, 7] += 1e-3
    with pytest.raises(E, match=r"H=.*not symmetric.*H\[7, 4\]|H=.*not symmetric.*H\[4, 7\]"):
        mdhess.normal_modes(bad)
    with pytest.raises(E, match="H=.*not symmetric"):
        mdhess.normal_modes(scipy.sparse.csr_matrix(bad))
    with pytest.raises(E, match="units="):
        mdhess.normal_modes(H, units="si")
    with pytest.raises(E, match="solver="):
        mdhess.normal_modes(H, solver="magic")
    with pytest.raises(E, match="project="):
        mdhess.normal_modes(H, project="rotations")
    with pytest.raises(E, match="positions="):
        mdhess.normal_modes(H, positions=R[:5])
    with pytest.raises(E, match="project='rigid'"):
        mdhess.normal_modes(H, project="rigid")
    for sigma in (float("nan"), float("inf"), "0.1", True):
        with pytest.raises(E, match=r"sigma=\.\.\.\) must be a finite real number.*got"):
            mdhess.normal_modes(H, k=10, solver="shift-invert", sigma=sigma)


def test_shift_below_spectrum_and_block_check(monkeypatch):
    """The shifted preconditioner's two helpers against matrices with a known spectrum."""
    import scipy.sparse.linalg as sla

    from mdhess.modes._precond import blocks_indefinite, shift_below_spectrum

    rng = np.random.default_rng(2)
    V = np.linalg.qr(rng.normal(size=(60, 60)))[0]
    w = np.linspace(-3.0, 50.0, 60)
    A = (V * w) @ V.T
    sigma = shift_below_spectrum(lambda X: A @ X, 60)
    assert -3.0 * 1.1 * 1.02 <= sigma < -3.0  # 10% below a 1%-accurate estimate
    Apsd = (V * np.abs(w)) @ V.T
    assert shift_below_spectrum(lambda X: Apsd @ X, 60) == 0.0

    # ARPACK not converging: the norm bound given, else 1.5 x a power estimate of ||A||
    def no_convergence(*args, **kwargs):
        raise sla.ArpackNoConvergence("test", np.zeros(0), np.zeros((60, 0)))

    monkeypatch.setattr(sla, "eigsh", no_convergence)
    assert shift_below_spectrum(lambda X: A @ X, 60, norm_bound=77.0) == -77.0
    assert shift_below_spectrum(lambda X: A @ X, 60) <= -50.0
    D = np.stack([np.diag([1.0, 2.0, 3.0]), np.diag([1.0, -1e-3, 2.0])])
    assert blocks_indefinite(D) and not blocks_indefinite(D[:1])
    assert not blocks_indefinite(np.stack([np.diag([1.0, -1e-14, 2.0])]))  # rounding, not a mode

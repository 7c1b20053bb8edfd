"""The JAX (device-resident) LOBPCG, ``normal_modes(solver="jax-lobpcg")``: against dense numpy
``eigh`` in free space (rigid-body deflation), periodic orthorhombic and triclinic boxes; against
the numpy LOBPCG path; on matrix-free operators; its warning and its bad input.

Every default test uses N = 108 atoms and 13 vibrational pairs (b = 23 columns) so that the
jitted steps compile once for the whole module.

Tolerances: LOBPCG is run at tol=1e-12 (its test bounds the relative eigenvalue error by tol, to
first order: Kato-Temple), so the 1e-10 relative check on eigenvalues leaves two orders of margin
for rounding (~1e-13 for these matrices). Subspaces: the sine of the largest principal angle is
bounded by residual / gap, the residual being sqrt(tol) |theta| at most: 1e-6 |theta| / gap,
checked as 1e-5 / relative gap (a 10x margin).
"""

import functools
import warnings

import numpy as np
import pytest
import scipy.linalg

import mdhess
from mdhess._errors import InputError
from mdhess.modes._input import hessian_input
from mdhess.modes._jax_lobpcg import jax_lobpcg
from mdhess.modes._nma import choose_solver
from mdhess.modes._rigid import rigid_body_basis

A_FCC = 1.5496  # sigma: compressed LJ fcc, stable under a small rattle (no negative modes)
TOL = 1e-12


def fcc_cells(n_cells, cell, rattle=0.01, seed=0):
    """Positions of an n_cells^3 fcc crystal in the (3, 3) cell (rows: cell vectors of the whole box)."""
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    frac = ((g + basis[None]).reshape(-1, 3)) / n_cells
    R = frac @ cell
    return R + np.random.default_rng(seed).normal(scale=rattle, size=R.shape)


def system(kind):
    """(potential, positions, box, masses, k): N = 108; k such that 13 vibrational pairs are solved."""
    masses = np.random.default_rng(1).uniform(1.0, 2.0, 108)
    if kind == "free":  # 6 rigid-body directions projected
        R = fcc_cells(3, np.eye(3) * 3 * A_FCC)
        return mdhess.lennard_jones(cutoff=2.5), R, None, masses, 19
    if kind == "orthorhombic":
        cell = np.diag([3.0, 3.0, 3.0]) * A_FCC
        return mdhess.lennard_jones(cutoff=2.2), fcc_cells(3, cell), cell, masses, 16
    # triclinic: a supercell of the same crystal (tilts that are fcc translations, h + k + l even)
    cell = np.array([[3.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.5, 0.5, 3.0]]) * A_FCC  # volume (3a)^3 kept
    return mdhess.lennard_jones(cutoff=2.0), fcc_cells(3, np.eye(3) * 3 * A_FCC), cell, masses, 16


def dense_reference(pot, R, box, masses):
    """Eigenvalues and vectors of the mass-weighted Hessian with the rigid-body directions Y
    deflated, by numpy eigh: Q A Q + beta Y Y^T (the Y directions pushed above the spectrum),
    then the projected directions merged back as zero modes."""
    H = np.asarray(mdhess.hessian(pot, R, box=box))
    s = np.repeat(1.0 / np.sqrt(masses), 3)
    A = s[:, None] * H * s[None, :]
    Y = rigid_body_basis(masses, R if box is None else None)
    Q = np.eye(len(A)) - Y @ Y.T
    beta = 10.0 * np.abs(A).sum(axis=1).max()
    w, V = np.linalg.eigh(Q @ A @ Q + beta * Y @ Y.T)
    c = Y.shape[1]
    w, V = w[:-c], V[:, :-c]
    order = np.argsort(np.concatenate([w, np.zeros(c)]), kind="stable")
    return np.concatenate([w, np.zeros(c)])[order], np.hstack([V, Y])[:, order]


def sin_angle(V1, V2):
    return float(np.sin(scipy.linalg.subspace_angles(V1, V2).max()))


@functools.cache
def prepared(kind):
    """(kind, pot, R, box, masses, k, BSR Hessian, reference eigenvalues, reference vectors)."""
    pot, R, box, masses, k = system(kind)
    B = mdhess.hessian(pot, R, box=box, format="bsr")
    w, V = dense_reference(pot, R, box, masses)
    return kind, pot, R, box, masses, k, B, w, V


@pytest.fixture(scope="module", params=["free", "orthorhombic", "triclinic"])
def case(request):
    return prepared(request.param)


def check_against_reference(nm, w, V, k, rtol=1e-10):
    """The k modes of nm against dense eigh's (w, V); returns the relative gap after mode k and
    the mask of the non-zero reference eigenvalues."""
    assert nm.eigenvalues.shape == (k,)
    nz = np.abs(w[:k]) > 1e-9 * np.abs(w).max()  # the projected zero modes are exact zeros
    np.testing.assert_allclose(nm.eigenvalues[nz], w[:k][nz], rtol=rtol)
    assert np.all(np.abs(nm.eigenvalues[~nz]) <= 1e-12 * np.abs(w).max())
    gap = (w[k] - w[k - 1]) / abs(w[k - 1])
    assert gap > 1e-3  # a separated subspace, else the angle test says nothing
    assert sin_angle(V[:, :k], nm.vectors) < 1e-5 / min(gap, 1.0)
    return gap, nz


def test_lowest_match_dense_eigh(case):
    name, pot, R, box, masses, k, B, w, V = case
    nm = mdhess.normal_modes(B, masses, k=k, positions=R, box=box, solver="jax-lobpcg", tol=TOL)
    assert nm.solver == "jax-lobpcg"
    assert nm.n_projected == (6 if name == "free" else 3)
    assert nm.info["converged"] == k - nm.n_projected
    assert "two-level" in nm.info["preconditioner"]
    check_against_reference(nm, w, V, k)


@pytest.mark.parametrize(
    "kind",
    [
        "orthorhombic",
        pytest.param("free", marks=pytest.mark.slow),
        pytest.param("triclinic", marks=pytest.mark.slow),
    ],
)
def test_same_as_numpy_lobpcg_path(kind):
    """Same method, same start block: the same iterations (to rounding) and the same pairs."""
    _, pot, R, box, masses, k, B, w, V = prepared(kind)
    kw = dict(k=k, positions=R, box=box, tol=TOL)
    nj = mdhess.normal_modes(B, masses, solver="jax-lobpcg", **kw)
    nn = mdhess.normal_modes(B, masses, solver="lobpcg", **kw)
    if nn.info["preconditioner"] == nj.info["preconditioner"].replace(" on the device", ""):
        assert abs(nj.info["iterations"] - nn.info["iterations"]) <= 2
    # (on sparse rows the numpy path smooths with Chebyshev steps: fewer iterations, same pairs)
    nz = np.abs(nn.eigenvalues) > 1e-9 * nn.scale
    np.testing.assert_allclose(nj.eigenvalues[nz], nn.eigenvalues[nz], rtol=1e-10)
    gap = (w[k] - w[k - 1]) / abs(w[k - 1])
    assert sin_angle(nn.vectors, nj.vectors) < 1e-5 / min(gap, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("store_blocks", [True, False])
def test_operators_match_dense_eigh(store_blocks):
    """The hvp operators (stored blocks, matrix-free): products through the operator's own jitted
    product, the coarse grid from the operator's positions."""
    _, pot, R, box, masses, k, _, w, V = prepared("orthorhombic")
    op = mdhess.hvp(pot, R, box=box, store_blocks=store_blocks)
    nm = mdhess.normal_modes(op, masses, k=k, box=box, solver="jax-lobpcg", tol=TOL)
    assert nm.info["product"] == "the operator's own product"
    assert "two-level" in nm.info["preconditioner"]
    check_against_reference(nm, w, V, k)


@pytest.mark.parametrize("solver", ["lobpcg", "jax-lobpcg"])
def test_float32_operator_modes_to_float32_accuracy(solver):
    """A float32 operator (``hvp(dtype="float32")``): its products carry float32 rounding, so
    residuals stop at their noise. The symmetry probe and the convergence test allow for it
    (before, the probe refused the operator as "not symmetric" at 4e-9 relative, and forced
    past it, LOBPCG iterated to NaN). Lowest and highest modes against dense eigh of the float64
    Hessian: eigenvalues to 1e-4 of the largest (measured 2e-6; float32 eps times the spectrum's
    scale over the softest eigenvalue bounds it), subspaces to 1e-2 rad (measured 2e-4; the
    residual floor over the gap)."""
    _, pot, R, box, masses, k, _, w, V = prepared("orthorhombic")
    op = mdhess.hvp(pot, R, box=box, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unconverged-modes warning, no NaN arithmetic
        lo = mdhess.normal_modes(op, masses, k=k, box=box, solver=solver)
        hi = mdhess.normal_modes(op, masses, k=k, box=box, solver=solver, which="highest")
    assert lo.info["precision"].startswith("float32 products")
    scale = np.abs(w).max()
    nz = np.abs(w[:k]) > 1e-9 * scale
    assert np.abs(lo.eigenvalues[nz] - w[:k][nz]).max() <= 1e-4 * scale
    assert sin_angle(V[:, :k], lo.vectors) < 1e-2
    assert np.abs(hi.eigenvalues - w[-k:]).max() <= 1e-4 * scale
    assert sin_angle(V[:, -k:], hi.vectors) < 1e-2


def test_unconverged_warns_like_numpy_path():
    _, pot, R, box, masses, k, B, _, _ = prepared("orthorhombic")
    sentence = (
        r"^normal_modes: LOBPCG converged \d+ of 13 modes in 2 iterations \(largest relative residual "
        r"\S+\); raise maxiter or loosen tol$"
    )
    for solver in ("jax-lobpcg", "lobpcg"):  # the same class and sentence from both paths
        with pytest.warns(RuntimeWarning, match=sentence) as rec:
            nm = mdhess.normal_modes(B, masses, k=k, positions=R, box=box, solver=solver, maxiter=2)
        assert nm.info["converged"] < 13 and nm.info["iterations"] == 2
        (warn,) = [r for r in rec if issubclass(r.category, RuntimeWarning)]
        assert warn.filename == __file__  # points at the caller of normal_modes


def test_bad_input():
    _, pot, R, box, masses, _, B, _, _ = prepared("orthorhombic")
    with pytest.raises(InputError, match="leaves too few other modes for solver='jax-lobpcg'"):
        mdhess.normal_modes(B, masses, k=323, box=box, solver="jax-lobpcg")
    with pytest.raises(InputError, match="k=...") as e:
        mdhess.normal_modes(B, masses, k=325, box=box, solver="jax-lobpcg")
    assert "325" in str(e.value)
    with pytest.raises(InputError, match="jax-lobpcg"):  # the list of solvers names it
        mdhess.normal_modes(B, masses, k=5, box=box, solver="jax_lobpcg")
    with pytest.raises(ValueError, match="columns < k"):
        jax_lobpcg(lambda X: X, np.random.default_rng(0).standard_normal((30, 4)), 5)


def test_auto_picks_jax_lobpcg_off_cpu(monkeypatch):
    """ "auto": the numpy LOBPCG on a CPU backend below JAX_LOBPCG_CPU_MIN_DOF degrees of freedom
    (the JAX one is faster above: docs/benchmarks.md), the JAX LOBPCG on an accelerator; dense and
    shift-invert rules unchanged."""
    import mdhess.modes._nma as nma

    pot, R, box, masses, _ = system("orthorhombic")
    R2 = np.vstack([R + s * np.array([3.0, 0, 0]) * A_FCC for s in range(5)])  # 540 atoms: above DENSE_MAX
    box2 = np.diag([15.0, 3.0, 3.0]) * A_FCC
    inp = hessian_input(mdhess.hessian(pot, R2, box=box2, format="bsr"))
    kw = dict(k=10, which="lowest", positions=R2, cell=box2)
    monkeypatch.setattr(nma, "on_cpu", lambda: True)
    assert choose_solver("auto", inp, **kw) == "lobpcg"
    monkeypatch.setattr(nma, "JAX_LOBPCG_CPU_MIN_DOF", inp.n3)  # a system at the CPU crossover (60,000 atoms)
    assert choose_solver("auto", inp, **kw) == "jax-lobpcg"
    monkeypatch.setattr(nma, "JAX_LOBPCG_CPU_MIN_DOF", inp.n3 + 1)
    assert choose_solver("auto", inp, **kw) == "lobpcg"
    monkeypatch.setattr(nma, "on_cpu", lambda: False)
    assert choose_solver("auto", inp, **kw) == "jax-lobpcg"
    assert choose_solver("auto", inp, **{**kw, "k": 100}) == "dense"  # many modes: dense as before


@pytest.mark.slow
def test_highest_and_unstable_structure():
    """which="highest" (unpreconditioned, on -A), and a saddle point (negative modes: the
    preconditioner built from A - sigma I below the spectrum), both against dense eigh."""
    _, pot, R, box, masses, k, B, w, V = prepared("orthorhombic")
    nm = mdhess.normal_modes(B, masses, k=8, which="highest", box=box, solver="jax-lobpcg", tol=TOL)
    np.testing.assert_allclose(nm.eigenvalues, w[-8:], rtol=1e-10)
    # a strongly rattled simple-cubic LJ crystal at short cutoff: unstable (negative modes)
    pot = mdhess.lennard_jones(cutoff=1.5)
    g = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.1
    R = g + np.random.default_rng(2).normal(scale=0.08, size=g.shape)
    box = np.eye(3) * 5.5
    masses = np.ones(len(R))
    w, V = dense_reference(pot, R, box, masses)
    assert w[0] < 0
    B = mdhess.hessian(pot, R, box=box, format="bsr")
    nm = mdhess.normal_modes(B, masses, k=20, positions=R, box=box, solver="jax-lobpcg", tol=TOL)
    assert "sigma" in nm.info["preconditioner"]
    nz = np.abs(w[:20]) > 1e-9 * np.abs(w).max()
    np.testing.assert_allclose(nm.eigenvalues[nz], w[:20][nz], rtol=1e-10)


@pytest.mark.slow
def test_no_positions_block_jacobi():
    _, pot, R, box, masses, k, B, w, V = prepared("triclinic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nm = mdhess.normal_modes(B, masses, k=k, box=box, solver="jax-lobpcg", tol=TOL)
    assert nm.info["preconditioner"].startswith("block Jacobi")
    check_against_reference(nm, w, V, k)

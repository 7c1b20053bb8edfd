"""``normal_modes(solver="jax-lobpcg", precision="mixed")``: phase 1 with float32 products, phase 2
with float64 ones (mdhess/modes/_jax_lobpcg.py). Against dense numpy ``eigh`` and the float64
JAX LOBPCG in free space (rigid-body deflation) and a periodic box; the float32 products alone
shown unable to give 1e-8 eigenvalues; the fallbacks to float64; bad input.

N = 108 LJ fcc, 13 vibrational pairs (b = 23 columns), as tests/test_jax_lobpcg.py (helpers copied).

Tolerances: LOBPCG at tol=1e-12 bounds the relative eigenvalue error by tol to first order
(Kato-Temple); the final test of the mixed solve is the float64 one on float64 products, so the
1e-9 relative check (as asked by the issue's 1e-8 with a margin) holds with three orders to spare
(measured ~1e-13). Subspaces: sin of the largest principal angle <= residual / gap with the
residual <= sqrt(tol) |theta| = 1e-6 |theta|, checked as 1e-5 / relative gap (a 10x margin).
"""

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

import mdhess
from mdhess._errors import InputError
from mdhess.modes._device_ops import ell_from_sparse, ell_matmat
from mdhess.modes._rigid import rigid_body_basis

sys.path.insert(0, str(Path(__file__).parent))
from test_jax_lobpcg import check_against_reference, sin_angle, system  # noqa: E402  (the same N = 108 crystals)

TOL = 1e-12


@functools.cache
def prepared(kind):
    """(pot, R, box, masses, k, BSR Hessian, mass-weighted dense A, reference eigenvalues and
    vectors of Q A Q with the rigid-body directions merged back as exact zeros)."""
    pot, R, box, masses, k = system(kind)
    B = mdhess.hessian(pot, R, box=box, format="bsr")
    s = np.repeat(1.0 / np.sqrt(masses), 3)
    A = s[:, None] * B.toarray() * s[None, :]
    Y = rigid_body_basis(masses, R if box is None else None)
    Q = np.eye(len(A)) - Y @ Y.T
    beta = 10.0 * np.abs(A).sum(axis=1).max()  # the rigid directions pushed above the spectrum
    w, V = np.linalg.eigh(Q @ A @ Q + beta * Y @ Y.T)
    c = Y.shape[1]
    w, V = w[:-c], V[:, :-c]
    order = np.argsort(np.concatenate([w, np.zeros(c)]), kind="stable")
    w, V = np.concatenate([w, np.zeros(c)])[order], np.hstack([V, Y])[:, order]
    return pot, R, box, masses, k, B, A, w, V


@pytest.mark.parametrize("kind", ["free", "orthorhombic"])
def test_mixed_matches_dense_eigh_and_float64(kind):
    pot, R, box, masses, k, B, _, w, V = prepared(kind)
    kw = dict(k=k, positions=R, box=box, solver="jax-lobpcg", tol=TOL)
    nm = mdhess.normal_modes(B, masses, precision="mixed", **kw)
    i = nm.info
    assert i["precision"] == "mixed" and i["converged"] == k - nm.n_projected
    # phase 1 ran with float32 products, phase 2 with float64 ones
    assert i["iterations_float32"] > 0 and i["matvecs_float32"] > 0
    assert i["iterations_float64"] > 0
    assert i["iterations"] == i["iterations_float32"] + i["iterations_float64"]
    assert 0 < i["float32_noise"] < 1e-5 * np.abs(w).max()  # float32 rounding of the products
    gap, nz = check_against_reference(nm, w, V, k, rtol=1e-9)
    # the float64 solver (default precision) on the same problem: the same pairs
    n64 = mdhess.normal_modes(B, masses, **kw)
    assert n64.info["precision"] == "float64" and "iterations_float32" not in n64.info
    np.testing.assert_allclose(nm.eigenvalues[nz], n64.eigenvalues[nz], rtol=1e-9)
    assert sin_angle(n64.vectors, nm.vectors) < 1e-5 / min(gap, 1.0)


def test_float32_products_alone_cannot_give_1e8():
    """Why phase 2 is needed: with the float32 padded rows, even the EXACT softest eigenvectors
    have Rayleigh quotients off by more than 1e-8 relative (the product's rounding, ~u ||A|| with
    u = 6e-8 and ||A|| / lambda_min ~ 40 here, grows as (box / spacing)^2 in a crystal), and
    residuals far above the float64 ones; a float32-only solve can do no better. Control: the
    float64 rows give the eigenvalues to 1e-12."""
    _, R, box, masses, k, B, _, w, V = prepared("orthorhombic")
    nz = np.abs(w[:k]) > 1e-9 * np.abs(w).max()
    x, lam = V[:, :k][:, nz], w[:k][nz]
    blocks, cols, n = ell_from_sparse(B, row_scale=1.0 / np.sqrt(masses))
    blocks32, cols32, _ = ell_from_sparse(B, row_scale=1.0 / np.sqrt(masses), dtype=np.float32)
    Ax = np.asarray(ell_matmat(blocks, cols, x, n_atoms=n))
    Ax32 = np.asarray(ell_matmat(blocks32, cols32, x, n_atoms=n))
    rq, rq32 = np.einsum("ij,ij->j", x, Ax), np.einsum("ij,ij->j", x, Ax32)
    assert np.max(np.abs(rq - lam) / lam) < 1e-12
    assert np.max(np.abs(rq32 - lam) / lam) > 1e-8  # measured 6e-8 to 2e-7
    res = np.linalg.norm(Ax - x * lam, axis=0) / lam
    res32 = np.linalg.norm(Ax32 - x * lam, axis=0) / lam
    assert res.max() < 1e-12 and res32.min() > 1e-7  # measured ~1e-6


def test_bad_input():
    _, R, box, masses, k, B, _, _, _ = prepared("orthorhombic")
    with pytest.raises(InputError, match=r"precision=\.\.\.\) must be one of .*'float16'"):
        mdhess.normal_modes(B, masses, k=k, box=box, solver="jax-lobpcg", precision="float16")
    with pytest.raises(InputError, match=r"precision=\.\.\.\).*got 64"):
        mdhess.normal_modes(B, masses, k=k, box=box, solver="jax-lobpcg", precision=64)
    for solver in ("lobpcg", "auto", "dense"):
        with pytest.raises(InputError, match=f"precision='mixed'.*jax-lobpcg.*got solver='{solver}'"):
            mdhess.normal_modes(B, masses, k=k, box=box, solver=solver, precision="mixed")


def test_host_product_runs_float64(monkeypatch):
    """A BSR whose padded copy would not fit (its product left on the host blocks): float64 only,
    and ``info`` says so."""
    import mdhess.modes._jax_lobpcg as jl

    monkeypatch.setattr(jl, "ell_fits", lambda B, columns, reserve=0: (False, "no memory (test)"))
    _, R, box, masses, k, B, _, w, _ = prepared("orthorhombic")
    nm = mdhess.normal_modes(
        B, masses, k=k, positions=R, box=box, solver="jax-lobpcg", tol=TOL, precision="mixed"
    )
    assert "on the host" in nm.info["product"]
    assert nm.info["precision"].startswith("float64 (precision='mixed' needs padded block rows")
    assert "iterations_float32" not in nm.info
    nz = np.abs(w[:k]) > 1e-9 * np.abs(w).max()
    np.testing.assert_allclose(nm.eigenvalues[nz], w[:k][nz], rtol=1e-9)


@pytest.mark.slow
def test_highest_and_operator():
    """which="highest" (phase 1 on -A, unpreconditioned) against dense eigh; an hvp operator
    (its own float64 product): float64, said in ``info``."""
    pot, R, box, masses, k, B, _, w, _ = prepared("orthorhombic")
    nm = mdhess.normal_modes(
        B, masses, k=8, which="highest", box=box, solver="jax-lobpcg", tol=TOL, precision="mixed"
    )
    assert nm.info["precision"] == "mixed" and nm.info["iterations_float32"] > 0
    np.testing.assert_allclose(nm.eigenvalues, w[-8:], rtol=1e-9)
    op = mdhess.hvp(pot, R, box=box, store_blocks=True)
    nm = mdhess.normal_modes(op, masses, k=k, box=box, solver="jax-lobpcg", tol=TOL, precision="mixed")
    assert nm.info["precision"].startswith("float64") and "operator's own product" in nm.info["precision"]
    nz = np.abs(w[:k]) > 1e-9 * np.abs(w).max()
    np.testing.assert_allclose(nm.eigenvalues[nz], w[:k][nz], rtol=1e-9)

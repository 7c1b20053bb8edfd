"""normal_modes on a BSR matrix of 3x3 blocks read in place (issue 14: the lowest modes of a
10^6-atom glass on a 24 GB machine): no CSR of the mass-weighted matrix, no scaled copy.

The helpers that read the blocks (diagonal blocks, row sums, the coarse matrix P^T A P, the
threaded product) are checked against the CSR of the mass-weighted matrix (scipy), with chunks
forced small so that every chunk boundary is crossed; the solves against the CSR route of the
same matrix and against dense ``eigh``. Tolerances: the helpers do the same sums in another order
(1e-12 relative); the solves run at tol=1e-12, whose test bounds the relative eigenvalue error by
~tol (Kato-Temple): 1e-9 relative leaves three orders of margin.
"""

import numpy as np
import pytest
import scipy.sparse

import mdhess
import mdhess.modes._input as minput
import mdhess.modes._jax_lobpcg as jl
from mdhess.modes._massweight import mass_weight
from mdhess.modes._precond import coarse_spacing, trilinear_prolongator

A_FCC = 1.5496


def fcc(n_cells, rattle=0.02, seed=0):
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = ((g + basis[None]).reshape(-1, 3)) * A_FCC
    return R + np.random.default_rng(seed).normal(scale=rattle, size=R.shape), np.eye(3) * n_cells * A_FCC


def lj_system(n_cells):
    """(R, box, BSR Hessian, masses): rattled LJ fcc of 4 n_cells^3 atoms, random masses 1-3."""
    R, box = fcc(n_cells)
    B = mdhess.hessian(mdhess.lennard_jones(cutoff=2.2), R, box=box, format="bsr")
    masses = np.random.default_rng(1).uniform(1.0, 3.0, len(R))
    return R, box, B, masses


@pytest.fixture(scope="module")
def lj():
    return lj_system(3)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(minput, "ROW_CHUNK_BLOCKS", 50)  # one atom a chunk (~52 blocks a row): 108 chunks
    monkeypatch.setattr(minput, "PRODUCT_CHUNK_BLOCKS", 150)
    monkeypatch.setattr(minput, "PARALLEL_MIN_ROWS", 3)


def test_block_helpers_match_the_csr(lj, small_chunks):
    R, box, B, m = lj
    A = mass_weight(B, m).tocsr()
    inp = minput.hessian_input(B)
    assert inp.blocks3 is B
    np.testing.assert_allclose(inp.diagonal_blocks(m), minput.csr_diagonal_blocks(A), rtol=1e-12, atol=0)
    ref = float(abs(A).sum(axis=1).max())
    assert abs(inp.abs_row_sum_max(m) - ref) <= 1e-12 * ref
    P = trilinear_prolongator(R, box, np.sqrt(m), coarse_spacing(R, box, len(m)), rotations=False)
    Ac = (P.T @ (A @ P)).toarray()
    np.testing.assert_allclose(inp.coarse_matrix(m, P), Ac, rtol=0, atol=1e-12 * np.abs(Ac).max())
    X = np.random.default_rng(2).standard_normal((A.shape[0], 5))
    prod = minput.BlockRowProduct(B, m, n_threads=3)
    assert prod.pool is not None and len(prod.chunks) > 3
    np.testing.assert_allclose(prod(X), A @ X, rtol=0, atol=1e-12 * np.abs(A @ X).max())
    np.testing.assert_allclose(prod(X[:, 0]), A @ X[:, 0], rtol=0, atol=1e-12 * np.abs(A @ X).max())
    out = np.full(X.shape, np.nan)  # a caller's buffer, written again and again: the same numbers
    ref = prod(X)
    for Z in (X, 2 * X):
        got = prod(Z, out=out)
        assert got is out and np.array_equal(got, prod(Z))
    assert np.array_equal(prod(X, out=out), ref)
    with pytest.raises(ValueError, match="C-contiguous float64"):
        prod(X, out=np.empty((X.shape[0], 4)))
    prod.close()


def test_a_bsr_with_other_blocks_or_unsorted_is_not_read_in_place(lj):
    B = lj[2]
    assert minput.hessian_input(B.tocsr()).blocks3 is None
    assert minput.hessian_input(B.tobsr(blocksize=(1, 1))).blocks3 is None
    # an unsorted copy (indices reversed within each block row): converted, not read in place
    U = B.copy()
    for i in range(U.shape[0] // 3):
        a, b = U.indptr[i], U.indptr[i + 1]
        U.indices[a:b] = U.indices[a:b][::-1].copy()
        U.data[a:b] = U.data[a:b][::-1].copy()
    U.has_sorted_indices = False
    assert minput.hessian_input(U).blocks3 is None


@pytest.fixture
def no_csr(monkeypatch):
    """Any CSR of the mass-weighted matrix fails the test."""

    def refuse(self, masses):
        raise AssertionError("the mass-weighted CSR was made")

    monkeypatch.setattr(minput.SparseInput, "_mass_weighted_csr", refuse)


ROUTES = {  # route: (solver, padded rows fit, CSR fits, info["product"] starts with)
    "padded rows": ("jax-lobpcg", True, False, "padded"),
    "host, in place": ("jax-lobpcg", False, False, "the BSR blocks in place, on the host (forced"),
    "host, CSR": ("jax-lobpcg", False, True, "the mass-weighted CSR, on the host (forced"),
    "numpy, in place": ("lobpcg", True, False, None),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_modes_in_place_equal_the_csr_route(lj, route, monkeypatch, small_chunks):
    """Each product route against dense eigh of the same matrix; the in-place routes with any
    CSR of the mass-weighted matrix refused."""
    R, box, B, m = lj
    solver, ell, csr, product = ROUTES[route]
    ref = mdhess.normal_modes(B.toarray(), m, k=16, positions=R, box=box, solver="dense")
    monkeypatch.setattr(jl, "ell_fits", lambda B, columns, reserve=0: (ell, "" if ell else "forced by the test"))
    monkeypatch.setattr(minput, "csr_fits", lambda B, columns: csr)
    if not csr:
        monkeypatch.setattr(minput.SparseInput, "_mass_weighted_csr", _refuse)
    nm = mdhess.normal_modes(B, m, k=16, positions=R, box=box, solver=solver, tol=1e-12)
    if product:
        assert nm.info["product"].startswith(product)
    assert "coarse grid" in nm.info["preconditioner"]
    np.testing.assert_allclose(nm.eigenvalues[3:], ref.eigenvalues[3:], rtol=1e-9, atol=0)


def _refuse(self, masses):
    raise AssertionError("the mass-weighted CSR was made")


def test_indefinite_bsr_in_place(lj, no_csr, monkeypatch):
    """A saddle point (B - c I: negative modes): the preconditioner is built from A - sigma I
    with the spectrum bound from the blocks' row sums; against dense eigh."""
    R, box, B, m = lj
    monkeypatch.setattr(jl, "ell_fits", lambda B, columns, reserve=0: (False, "forced by the test"))
    monkeypatch.setattr(minput, "csr_fits", lambda B, columns: False)
    S = B.copy()
    w_lo = mdhess.normal_modes(B.toarray(), k=8, solver="dense").eigenvalues[3:]
    c = float(w_lo[2])  # two modes below zero after the shift (unit masses)
    S.data[np.flatnonzero(S.indices == np.repeat(np.arange(S.shape[0] // 3), np.diff(S.indptr)))] -= c * np.eye(3)
    nm = mdhess.normal_modes(S, k=10, positions=R, box=box, solver="jax-lobpcg", tol=1e-12)
    assert "sigma" in nm.info["preconditioner"]
    dense = scipy.sparse.csr_matrix(S).toarray()
    ref = mdhess.normal_modes(dense, k=10, solver="dense", box=box, positions=R)
    assert ref.eigenvalues[0] < 0
    np.testing.assert_allclose(
        np.sort(nm.eigenvalues), np.sort(ref.eigenvalues), rtol=1e-9, atol=1e-9 * abs(c)
    )


def test_memory_limits(lj, monkeypatch):
    """The solver's arrays (20 of (3N, b) float64: 1.2 MB here, b = 23) against
    $MDHESS_MEMORY_LIMIT: refused with MemoryPlanError below them; between them and them plus
    twice the padded rows (~0.9 MB), the product runs on the blocks in place."""
    R, box, B, m = lj
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "1M")
    with pytest.raises(mdhess.MemoryPlanError, match=r"jax-lobpcg.*23 columns.*MDHESS_MEMORY_LIMIT"):
        mdhess.normal_modes(B, m, k=16, positions=R, box=box, solver="jax-lobpcg")
    n3 = B.shape[0]
    vectors = jl.solver_bytes(n3, 23)
    c, chunks, w = jl.ell_shape(B, columns=23)
    ell = chunks * c * 9 * w * 8
    limit = int((vectors + 2 * ell) / jl.ELL_MEMORY_SHARE) - 1000  # just short of the padded rows
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", str(limit))
    nm = mdhess.normal_modes(B, m, k=16, positions=R, box=box, solver="jax-lobpcg", tol=1e-12)
    assert "on the host (padded rows" in nm.info["product"]
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", str(limit + 2000))
    nm2 = mdhess.normal_modes(B, m, k=16, positions=R, box=box, solver="jax-lobpcg", tol=1e-12)
    assert nm2.info["product"].startswith("padded")
    np.testing.assert_allclose(nm.eigenvalues[3:], nm2.eigenvalues[3:], rtol=1e-9, atol=0)

"""The device pieces of the JAX LOBPCG (mdhess/modes/_device_ops.py) against scipy, and the
solver's compiled programs: one per (shape, dtype), nothing retraced per iteration or per call.

Tolerances: the products sum at most ~40 float64 terms of O(1), so 1e-13 relative (of the
largest entry) leaves ~100x margin over rounding; the coarse inverse of a well-conditioned
(cond ~ 10) matrix agrees with numpy's to ~1e-15, checked at 1e-12.
"""

import logging
import re
from collections import Counter

import jax
import numpy as np
import pytest
import scipy.sparse

import mdhess
from mdhess._device import jit
from mdhess.modes._device_ops import (
    UNROLL_ROWS,
    coarse_inverse,
    ell_from_sparse,
    ell_matmat,
    rows_from_sparse,
    rows_matmat,
)


def block_matrix(n_atoms=40, seed=0):
    """A symmetric (3N, 3N) sparse matrix of 3x3 blocks with uneven row counts (1 to ~12)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_atoms, n_atoms)) < np.linspace(0.02, 0.3, n_atoms)[:, None]
    mask = mask | mask.T | np.eye(n_atoms, dtype=bool)
    A = scipy.sparse.kron(scipy.sparse.csr_matrix(mask.astype(float)), np.ones((3, 3))).tocsr()
    A.data = rng.standard_normal(A.nnz)
    return (A + A.T).tocsr()


@pytest.mark.parametrize("chunk_bytes", [None, 3 * 12 * 5 * 8 * 7])  # default; ~7-atom chunks, last padded
def test_ell_matmat_matches_scipy(chunk_bytes):
    A = block_matrix()
    X = np.random.default_rng(1).standard_normal((A.shape[0], 5))
    blocks, cols, n = ell_from_sparse(A, chunk_bytes=chunk_bytes, columns=5)
    if chunk_bytes is not None:
        assert blocks.shape[0] > 1 and blocks.shape[0] * blocks.shape[1] > n  # several chunks, padding
    Y = np.asarray(ell_matmat(blocks, cols, jax.device_put(X), n_atoms=n))
    ref = A @ X
    assert np.abs(Y - ref).max() <= 1e-13 * np.abs(ref).max()


@pytest.mark.parametrize("per_row", [3, UNROLL_ROWS + 9])  # unrolled sum; slot loop (8 at a time, remainder)
def test_rows_matmat_matches_scipy(per_row):
    rng = np.random.default_rng(2)
    m, n = 30, 50
    counts = 1 + np.arange(m) % per_row
    counts[0] = per_row + 2  # the widest row sets the padding; the others are shorter
    rows = np.repeat(np.arange(m), counts)
    cols_ = np.concatenate([rng.choice(n, c, replace=False) for c in counts])
    P = scipy.sparse.csr_matrix((rng.standard_normal(rows.size), (rows, cols_)), shape=(m, n))
    cols, vals = rows_from_sparse(P)
    assert cols.shape[1] == per_row + 2
    X = rng.standard_normal((n, 4))
    Y = np.asarray(jit(rows_matmat)(cols, vals, jax.device_put(X)))
    ref = P @ X
    assert np.abs(Y - ref).max() <= 1e-13 * np.abs(ref).max()


def test_coarse_inverse():
    rng = np.random.default_rng(4)
    G = rng.standard_normal((40, 40))
    Ac = G @ G.T / 40 + np.eye(40)  # SPD, condition ~ 10
    shift = 1e-8 * np.diag(Ac).max()
    ref = np.linalg.inv(Ac + shift * np.eye(40))
    inv = coarse_inverse(Ac, indefinite_ok=False)
    assert np.array_equal(inv, inv.T)
    assert np.abs(inv - ref).max() <= 1e-12 * np.abs(ref).max()
    with pytest.raises(np.linalg.LinAlgError):
        coarse_inverse(-Ac, indefinite_ok=False)
    # indefinite: |Ac|^+, i.e. the inverse of the matrix with the eigenvalues' signs dropped
    w, V = np.linalg.eigh(Ac)
    S = (V * np.where(np.arange(40) % 2, w, -w)) @ V.T
    np.testing.assert_allclose(coarse_inverse(S, indefinite_ok=True), np.linalg.inv(Ac), atol=1e-12)


def test_solver_compiles_once_per_shape():
    """Every jitted step of solver="jax-lobpcg" compiles at most once in a first call (shapes are
    static: masked columns, not dropped ones) and not at all in a second call on the same shapes."""
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    L = 3 * 1.5496
    R = ((g + basis[None]).reshape(-1, 3)) * 1.5496
    R = R + np.random.default_rng(5).normal(scale=0.01, size=R.shape)
    B = mdhess.hessian(mdhess.lennard_jones(cutoff=2.2), R, box=L, format="bsr")
    names = []

    class Grab(logging.Handler):
        def emit(self, record):
            m = re.search(r"Finished XLA compilation of jit\((\w+)\)", record.getMessage())
            if m:
                names.append(m.group(1))

    logger = logging.getLogger("jax")
    handler, level = Grab(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        counts = []
        for _ in range(2):
            names.clear()
            with jax.log_compiles():
                nm = mdhess.normal_modes(B, k=12, positions=R, box=L, solver="jax-lobpcg", tol=1e-10)
            counts.append(Counter(names))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert nm.info["iterations"] > 5  # many iterations ran through the same programs
    assert all(c <= 1 for c in counts[0].values()), counts[0]
    assert sum(counts[1].values()) == 0, counts[1]

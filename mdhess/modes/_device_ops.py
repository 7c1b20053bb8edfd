"""Device-resident pieces of the JAX LOBPCG (mdhess/modes/_jax_lobpcg.py): the mass-weighted
Hessian as padded block rows on the device, and the block-Jacobi / two-level preconditioner
applied there.

Padded block rows ("ELL" with 3x3 blocks). Row atom n stores its w stored blocks (w = the
largest row count; shorter rows padded with zero blocks pointing at atom n) side by side as a
(3, 3w) matrix, and their column atoms as (w,) indices. A product gathers the (3w, b) rows of X
that each atom needs and multiplies: one batched GEMM, gathers only (no scatter, no atomics: the
same code on CPU and GPU). The rows are processed in chunks (``lax.map``) so that the gathered
block stays near ``CHUNK_BYTES``; the whole operation is one jitted program.

The preconditioner's setup (3x3 diagonal blocks, the trilinear coarse grid, the coarse matrix
P^T A P and its inverse) is done once on the host with the helpers of mdhess/modes/_precond.py;
its application (every iteration) runs on the device: D^-1 r (batched 3x3) plus
P Ac^-1 P^T r (P and P^T as padded sparse rows, gathers only; Ac^-1 dense).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse

from .._device import jit
from ._input import is_canonical_bsr3, row_chunks

# gathered block per chunk of rows: small on a CPU, so that it stays in cache between the gather
# and the product (measured at N = 13,500, 79 blocks a row, 27 columns: 4 MB chunks of ~70 atoms
# 0.10 s, 64 MB 0.27 s, 0.5 MB 0.14 s; scipy's CSR 0.087 s: docs/benchmarks.md), large on an
# accelerator (fewer, wider launches)
CHUNK_BYTES = {"cpu": 4 << 20, "other": 1 << 30}


# -- padded block rows ------------------------------------------------------------------------------
def ell_from_sparse(A, *, dtype=np.float64, chunk_bytes=None, columns: int = 32, row_scale=None):
    """(blocks, cols, n_atoms): a (3N, 3N) scipy sparse matrix as padded 3x3 block rows on the
    device, chunked for ``ell_matmat``; with ``row_scale`` ((N,) s), of s_i A_ij s_j (the mass
    weighting, applied while the blocks are copied). A canonical BSR matrix of 3x3 blocks is
    read in place; any other is converted first.

    blocks: (chunks, c, 3, 3w) in ``dtype``; cols: (chunks, c, w) int32; c atoms per chunk (the
    last chunk padded with empty rows). ``columns`` is the typical number of vectors per product,
    used with ``chunk_bytes`` to size the chunks.
    """
    n = A.shape[0] // 3
    if is_canonical_bsr3(A):
        B = A  # read in place (mdhess's BSR output)
    else:
        B = scipy.sparse.bsr_matrix(A, blocksize=(3, 3))
        B.sort_indices()
    c, n_chunks, w = ell_shape(B, dtype=dtype, chunk_bytes=chunk_bytes, columns=columns)
    n_pad = n_chunks * c
    cols = np.tile(np.minimum(np.arange(n_pad), max(n - 1, 0))[:, None], (1, w)).astype(np.int32)
    blocks = np.zeros((n_pad, 3, w, 3), dtype=dtype)  # [n, a, slot, b]
    ip = B.indptr
    for a, b in row_chunks(B):  # temporaries of ~4M blocks at most
        p0, p1 = int(ip[a]), int(ip[b])
        cnt = np.diff(ip[a : b + 1])
        rows = np.repeat(np.arange(a, b), cnt)
        slot = np.arange(p0, p1) - np.repeat(ip[a:b], cnt)
        cols[rows, slot] = B.indices[p0:p1]
        d = B.data[p0:p1]
        if row_scale is not None:
            d = d * (row_scale[rows] * row_scale[B.indices[p0:p1]])[:, None, None]
        blocks[rows, :, slot, :] = d
    blocks = blocks.reshape(n_chunks, c, 3, 3 * w)
    return jax.device_put(blocks), jax.device_put(cols.reshape(n_chunks, c, w)), n


def ell_shape(B, *, dtype=np.float64, chunk_bytes=None, columns: int = 32):
    """(atoms per chunk, chunks, padded row width) of ``ell_from_sparse`` for a BSR matrix of 3x3
    blocks; its device blocks take chunks * c * 9 * w * itemsize bytes."""
    n = B.shape[0] // 3
    w = max(int(np.diff(B.indptr).max()) if n else 1, 1)
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES["cpu" if jax.default_backend() == "cpu" else "other"]
    c = int(max(1, min(n, chunk_bytes // (3 * w * columns * np.dtype(dtype).itemsize))))
    return c, -(-n // c), w


@partial(jit, static_argnames=("n_atoms",))
def ell_matmat(blocks, cols, X, n_atoms: int):
    """A @ X for padded block rows (``ell_from_sparse``); X (3N, b) -> (3N, b) in X's dtype (the
    products in the blocks' dtype)."""
    b = X.shape[1]
    X3 = X.reshape(n_atoms, 3, b).astype(blocks.dtype)

    def chunk(args):
        Bc, cc = args  # (c, 3, 3w), (c, w)
        G = X3[cc].reshape(cc.shape[0], -1, b)  # (c, 3w, b)
        return jnp.matmul(Bc, G)  # (c, 3, b)

    out = jax.lax.map(chunk, (blocks, cols))
    return out.reshape(-1, 3, b)[:n_atoms].reshape(3 * n_atoms, b).astype(X.dtype)


# -- padded sparse rows (the prolongator and its transpose) --------------------------------------------
def rows_from_sparse(P, dtype=np.float64):
    """(cols, vals): a scipy sparse matrix as padded rows (rows, r) on the device (padding: index 0,
    value 0)."""
    C = scipy.sparse.csr_matrix(P)
    C.sort_indices()
    cnt = np.diff(C.indptr)
    r = max(int(cnt.max()) if cnt.size else 1, 1)
    rows = np.repeat(np.arange(C.shape[0]), cnt)
    slot = np.arange(C.indices.size) - np.repeat(C.indptr[:-1], cnt)
    cols = np.zeros((C.shape[0], r), np.int32)
    vals = np.zeros((C.shape[0], r), dtype)
    cols[rows, slot] = C.indices
    vals[rows, slot] = C.data
    return jax.device_put(cols), jax.device_put(vals)


UNROLL_ROWS = 16  # padded rows up to this width: one fused sum of row gathers (else a loop)


def rows_matmat(cols, vals, X):
    """P @ X for padded rows: (rows, b).

    One row gather ``X[cols[:, r]]`` per slot r, summed: XLA fuses these into one pass over the
    output. The (rows, r, b) gather of all slots at once followed by an einsum (a batched dot of
    one row per batch) was 25x slower on a CPU (62 ms against 2.4 ms for the prolongator at
    N = 13,500, 27 columns). Wide rows (the prolongator's transpose: ~170 slots) loop over the
    slots, 8 at a time."""
    r = cols.shape[1]
    if r <= UNROLL_ROWS:
        out = vals[:, 0, None] * X[cols[:, 0]]
        for j in range(1, r):
            out = out + vals[:, j, None] * X[cols[:, j]]
        return out

    def body(j, out):
        return out + vals[:, j, None] * X[cols[:, j]]

    init = jnp.zeros((cols.shape[0], X.shape[1]), jnp.result_type(vals, X))
    return jax.lax.fori_loop(0, r, body, init, unroll=8)


# -- the preconditioner ---------------------------------------------------------------------------
def coarse_inverse(Ac, *, indefinite_ok: bool):
    """Dense (Ac + 1e-8 max diag I)^-1 by Cholesky (the shift makes the coarse rigid-body null space
    invertible, as in mdhess/modes/_precond.py's TwoLevel); where Ac is indefinite, |Ac|^+ from
    its eigendecomposition, or np.linalg.LinAlgError when ``indefinite_ok`` is False."""
    shift = 1e-8 * max(float(np.diag(Ac).max()), 1e-300)
    # LAPACK's potri inverts from the Cholesky factor (0.87 s against cho_solve on the identity's
    # 0.93 s at m = 2187, N = 13,500, one thread). The inverse, not the factor, goes to the
    # device: XLA's CPU cho_solve with 27 columns took 127 ms against the product's 14 ms
    L, info = scipy.linalg.lapack.dpotrf(np.asarray(Ac + shift * np.eye(len(Ac)), np.float64), lower=True)
    if info == 0:
        inv, info = scipy.linalg.lapack.dpotri(L, lower=True)
    if info == 0:
        return np.tril(inv) + np.tril(inv, -1).T
    if not indefinite_ok:
        raise np.linalg.LinAlgError(f"coarse matrix not positive definite (LAPACK info {info})")
    wc, Vc = np.linalg.eigh(Ac)
    keep = np.abs(wc) > 1e-10 * max(np.abs(wc).max(), 1e-300)
    return (Vc[:, keep] / np.abs(wc[keep])) @ Vc[:, keep].T


def device_preconditioner(D, coarse=None, dtype=np.float64):
    """The parameters (a pytree of device arrays) of T r = D^-1 r [+ P Ac^-1 P^T r].

    Args:
        D: (N, 3, 3) diagonal blocks (pseudo-inverted here).
        coarse: None (block Jacobi) or (P, Ac_inv): the (3N, m) scipy prolongator and the dense
            (m, m) inverse of the coarse matrix.
    """
    params = {"dinv": jax.device_put(np.linalg.pinv(D, rcond=1e-12, hermitian=True).astype(dtype))}
    if coarse is not None:
        P, Ac_inv = coarse
        params["p"] = rows_from_sparse(P, dtype)
        params["pt"] = rows_from_sparse(P.T, dtype)
        params["ac_inv"] = jax.device_put(np.asarray(Ac_inv, dtype))
    return params


def apply_preconditioner(params, R):
    """T R for (3N, b) R, inside jit (``params`` from ``device_preconditioner``)."""
    Dinv = params["dinv"]
    n, b = Dinv.shape[0], R.shape[1]
    Z = jnp.matmul(Dinv, R.reshape(n, 3, b)).reshape(R.shape)
    if "p" in params:
        c = rows_matmat(*params["pt"], R)  # P^T R
        Z = Z + rows_matmat(*params["p"], params["ac_inv"] @ c)
    return Z

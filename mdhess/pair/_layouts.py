"""Layouts of the same pair blocks: dense (3N, 3N) and scipy BSR (the H.v operators are in
``_operators``).

Nothing here knows any physics: each layout takes the blocks K_p (from ``_blocks``) and the pair
indices (i_p, j_p) and places H_ij = H_ji = -K_p, H_ii += K_p, H_jj += K_p. The all-pairs dense
writer asks ``_blocks`` for its per-pair coefficient tables; it writes no formula of its own.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from .._device import jit, to_device
from ._blocks import grid_elements_from_tables, row_coefficient_tables
from ._pairs import bucket

HESSIAN_FORMATS = ("dense", "bsr")
"""Layouts a Hessian is returned in: a dense (3N, 3N) array, or a scipy BSR matrix."""
DENSE_LAYOUTS = ("interleaved", "component")
"""Row orders of a dense Hessian: 3*i + a, or a*N + i (a symmetric permutation)."""


def diagonal_blocks(K, i, j, n_atoms: int):
    """(N, 3, 3) diagonal blocks H_ii = sum over pairs containing i of K."""
    return jax.ops.segment_sum(K, i, n_atoms) + jax.ops.segment_sum(K, j, n_atoms)


@partial(jit, static_argnames=("n_atoms",))
def dense_from_blocks(K, i, j, n_atoms: int):
    """(3N, 3N) Hessian, row 3*i + a, written straight into the (N, 3, N, 3) layout (no transpose)."""
    H = jnp.zeros((n_atoms, 3, n_atoms, 3), K.dtype)
    H = H.at[i, :, j, :].add(-K)
    H = H.at[j, :, i, :].add(-K)  # K is symmetric: K^T == K
    a = jnp.arange(n_atoms)
    H = H.at[a, :, a, :].add(diagonal_blocks(K, i, j, n_atoms))
    return H.reshape(3 * n_atoms, 3 * n_atoms)


def row_block_size(n_atoms: int, target_elements: int | None = None) -> int:
    """Atoms per row block so that a block's (B, N) intermediates hold ~target_elements each.

    Default: 2^16 on a CPU (cache-sized blocks were fastest: docs/benchmarks.md); 2^24 on an
    accelerator, where each loop step costs a kernel launch (N = 10000 would otherwise take
    1667 sequential steps) and a (B, N) block of 16 M entries is small against device memory.
    """
    if target_elements is None:
        target_elements = 1 << 16 if jax.default_backend() == "cpu" else 1 << 24
    return int(max(1, min(n_atoms, target_elements // max(n_atoms, 1))))


def _all_pairs_tables(potential, R, species, block: int):
    """(N, 3, 3) diagonal blocks and (N, N) per-pair tables (c, b) of ``row_coefficient_tables``
    over all pairs, row block by row block (the last block shifted back to end at N: its overlap
    is recomputed with identical values)."""
    n = R.shape[0]
    B = block
    cols = jnp.arange(n, dtype=jnp.int32)

    def body(k, carry):
        D, C, Bt = carry
        a0 = jnp.minimum(k * B, n - B)
        rows = (a0 + jnp.arange(B)).astype(jnp.int32)
        d = [R[None, :, c] - jax.lax.dynamic_slice_in_dim(R[:, c], a0, B)[:, None] for c in range(3)]
        si = jax.lax.dynamic_slice_in_dim(species, a0, B)
        pp = potential.pair_params(
            jnp.broadcast_to(si[:, None], (B, n)), jnp.broadcast_to(species[None, :], (B, n))
        )
        c, b, blk = row_coefficient_tables(potential.phi_eff, d, pp, rows[:, None] == cols[None, :])
        return (
            jax.lax.dynamic_update_slice(D, blk, (a0, 0, 0)),
            jax.lax.dynamic_update_slice(C, c, (a0, 0)),
            jax.lax.dynamic_update_slice(Bt, b, (a0, 0)),
        )

    init = (jnp.zeros((n, 3, 3), R.dtype), jnp.zeros((n, n), R.dtype), jnp.zeros((n, n), R.dtype))
    return jax.lax.fori_loop(0, -(-n // B), body, init)


@partial(jit, static_argnames=("block", "component_major"))
def dense_all_pairs(potential, R, species, block: int, component_major: bool = False):
    """Dense (3N, 3N) Hessian over ALL pairs (free space, no cutoff list).

    Two passes. First, row block by row block (``block`` atoms at a time), the radial
    derivatives of every pair once, kept as two (N, N) tables c = (phi'' - phi'/r) / r^2 and
    b = phi'/r (2/9 of the output's bytes), and the (N, 3, 3) diagonal blocks by row reductions.
    Then ONE elementwise fusion in the output's own index space writes every entry once,
    -(c_ij d_a d_b + b_ij delta_ab) with d = r_j - r_i recomputed from the positions: no
    (N, N, 3, 3) intermediate, no transpose, no scatter, no zero-filled output written twice.
    The output is shaped (N, 3, 3N) (row 3i + a; the long column axis 3j + b innermost, so XLA
    vectorises it) and reshaped for free; ``component_major`` writes row a*N + i, column b*N + j,
    shaped (3, N, 3N). Measured variants are in docs/benchmarks.md.
    """
    n = R.shape[0]
    diag, C, Bt = _all_pairs_tables(potential, R, species, block)
    c3, atoms = jnp.arange(3, dtype=jnp.int32), jnp.arange(n, dtype=jnp.int32)
    if component_major:
        shape, i_dim, a_dim = (3, n, 3 * n), 1, 0
        col_atom, col_comp = jnp.tile(atoms, 3), jnp.repeat(c3, n)
        four, pair_dims = (3, n, 3, n), (1, 3)
    else:
        shape, i_dim, a_dim = (n, 3, 3 * n), 0, 1
        col_atom, col_comp = jnp.repeat(atoms, 3), jnp.tile(c3, n)
        four, pair_dims = (n, 3, n, 3), (0, 2)

    def bc(x, dims):
        return jax.lax.broadcast_in_dim(x, shape, dims)

    def grid(t):  # (N, N) pair table -> the output's shape: broadcast over components, free reshape
        return jax.lax.broadcast_in_dim(t, four, pair_dims).reshape(shape)

    Rc = R[col_atom]  # (3N, 3): the column atom's position, one row per column of the output
    d = [bc(Rc[:, c], (2,)) - bc(R[:, c], (i_dim,)) for c in range(3)]  # r_j - r_i at every entry
    comp_row = jax.lax.broadcasted_iota(jnp.int32, shape, a_dim)
    comp_col = bc(col_comp, (2,))
    same = jax.lax.broadcasted_iota(jnp.int32, shape, i_dim) == bc(col_atom, (2,))
    off = grid_elements_from_tables(grid(C), grid(Bt), d, same, comp_row, comp_col)
    # diagonal entries diag[i, a, b], b picked by the column (broadcast dims must increase: (a, i)
    # order for the component-major shape)
    dcol = [diag[:, :, c].T if component_major else diag[:, :, c] for c in range(3)]
    on = bc(dcol[2], (0, 1))
    for c in (1, 0):
        on = jnp.where(comp_col == c, bc(dcol[c], (0, 1)), on)
    return jnp.where(same, on, off).reshape(3 * n, 3 * n)


@jit
def to_component_major(H):
    """Symmetric permutation (3i + a) -> (a N + i) of a dense Hessian (same eigenvalues)."""
    n = H.shape[0] // 3
    return H.reshape(n, 3, n, 3).transpose(1, 0, 3, 2).reshape(3 * n, 3 * n)


def _bsr_order(i, j, n_atoms: int):
    """Sorted block keys (row * N + col) of the entries [(i, j) pairs; (j, i) pairs; diagonal],
    and the permutation that sorts them. Only integers are sorted; blocks are gathered once."""
    n = n_atoms
    kt = np.int32 if n * n < 2**31 else np.int64  # 32-bit keys sort ~1.6x faster (N <= 46340)
    i = np.asarray(i, dtype=kt)
    j = np.asarray(j, dtype=kt)
    a = np.arange(n, dtype=kt)
    key = np.concatenate([i * n + j, j * n + i, a * n + a])
    order = np.argsort(key)
    return order, key[order]


def _bsr_finish(data, key, n_atoms: int) -> scipy.sparse.bsr_matrix:
    """Sum duplicate keys (several images of one (i, j) in a small periodic cell, or an atom's
    own image) and wrap sorted (key, block) pairs as a canonical scipy BSR matrix."""
    n = n_atoms
    dup = key[1:] == key[:-1]
    if dup.any():
        starts = np.flatnonzero(np.concatenate([[True], ~dup]))
        data = np.add.reduceat(data, starts, axis=0)
        key = key[starts]
    brow, bcol = np.divmod(key, n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(brow, minlength=n), out=indptr[1:])
    M = scipy.sparse.bsr_matrix((data, bcol.astype(np.int32), indptr), shape=(3 * n, 3 * n))
    M.has_sorted_indices = True
    return M


def bsr_from_blocks(K, diag, i, j, n_atoms: int) -> scipy.sparse.bsr_matrix:
    """Canonical scipy BSR (blocksize (3, 3); block rows sorted, duplicate blocks summed) from
    host arrays.

    Args:
        K: (p, 3, 3) numpy pair blocks; diag: (N, 3, 3) numpy diagonal blocks.
    """
    p = K.shape[0]
    order, key = _bsr_order(i, j, n_atoms)
    src = np.concatenate([-K, diag])  # off-diagonal blocks are -K
    pick = np.where(order < 2 * p, order % max(p, 1), order - p)  # row of src for each sorted entry
    return _bsr_finish(src[pick], key, n_atoms)


# below this many pairs bsr_from_device_blocks assembles on the host: the device gather's one-off
# XLA compile costs more than the host's sort and sums there (measured: docs/benchmarks.md,
# "Core engine", BSR assembly)
HOST_BSR_MAX_PAIRS = 1 << 15


@partial(jit, static_argnames=("n_atoms",))
def _bsr_gather(K, i, j, pick, n_atoms: int):
    diag = diagonal_blocks(K, i, j, n_atoms)
    return jnp.concatenate([-K, diag])[pick]


def bsr_from_device_blocks(K, i, j, pairs_i, pairs_j, n_atoms: int) -> scipy.sparse.bsr_matrix:
    """Canonical BSR from padded device blocks: the host sorts the integer keys (overlapping the
    device computing K, which JAX dispatches asynchronously) and the device gathers the blocks
    and diagonal sums straight into sorted order, so only the final data crosses to the host.

    Args:
        K: (capacity, 3, 3) device blocks, zero beyond the p real pairs; i, j: their padded
            device indices. pairs_i, pairs_j: the p real pairs (host).
    """
    cap, p = K.shape[0], len(pairs_i)
    if p < HOST_BSR_MAX_PAIRS:  # small: the host finishes in ~10 ms, the device gather would compile
        Kh = np.asarray(K)[:p]
        di, dj = np.zeros((2, n_atoms, 3, 3), Kh.dtype)
        np.add.at(di, pairs_i, Kh)  # the order of diagonal_blocks' two segment sums: the same
        np.add.at(dj, pairs_j, Kh)  # numbers as the dense layout, bit for bit
        diag = di + dj
        return bsr_from_blocks(Kh, diag, pairs_i, pairs_j, n_atoms)
    order, key = _bsr_order(pairs_i, pairs_j, n_atoms)
    pick = np.where(order < 2 * p, order % max(p, 1), cap + order - 2 * p)
    nnz = pick.shape[0]
    pick = np.concatenate([pick, np.zeros(bucket(nnz) - nnz, pick.dtype)])  # reuse compiled sizes
    data = np.asarray(_bsr_gather(K, i, j, to_device(pick), n_atoms))[:nnz]
    return _bsr_finish(data, key, n_atoms)

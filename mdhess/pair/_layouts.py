"""Layouts of the same pair blocks: dense (3N, 3N) and scipy BSR (the H.v operators are in
``_operators``).

Nothing here knows any physics: each layout takes the blocks K_p (from ``_blocks``) and the pair
indices (i_p, j_p) and places H_ij = H_ji = -K_p, H_ii += K_p, H_jj += K_p. The all-pairs dense
writer asks ``_blocks`` for its per-pair coefficient tables; it writes no formula of its own.
"""

import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from .._device import jit, to_device
from ._blocks import grid_elements_from_tables, row_coefficient_tables

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


# -- canonical BSR, streamed -------------------------------------------------------------------
# The matrix is built in two passes over integers and blocks, never holding more than the output
# and a few integers per pair (memory model: docs/scaling.md, "Memory model"):
#   1. the pattern (host, integers only): the entries [(i, j) pairs; (j, i) pairs; diagonal]
#      sorted by block key row * N + col, giving indptr, indices and, for each entry, its place
#      in the sorted list;
#   2. the blocks, chunk by chunk of pairs, written straight into the preallocated data array at
#      those places (each pair's block to its two places), the diagonal sums accumulated on the
#      device in pair order.
# Where several entries share a block (images of one pair in a small periodic cell, an atom's
# own images) they are written to an unsummed buffer in sorted order and summed at the end.

HOST_BSR_MAX_PAIRS = 1 << 15
"""Below this many pairs the diagonal sums are formed on the host (float64: ``np.bincount``, ~3 ms
at 2^15 pairs; float32: ``np.add.at``, ~10 ms there), as a device accumulation compiles a kernel
first: docs/benchmarks.md, "Core engine", BSR assembly. All sum each atom's blocks in pair order:
the same numbers bit for bit."""


@dataclass(frozen=True)
class BsrPattern:
    """The canonical block pattern of a pair list and where each pair's blocks go.

    Attributes:
        n_atoms: N. i, j: (p,) the pairs (host, as given).
        indptr: (N + 1,) int64; indices: (nnzb,) int32 block columns, sorted within each row.
        entry: (2p + N,) place of each entry [(i, j) pairs; (j, i) pairs; diagonal] in the sorted
            entry list (int32 while it fits).
        starts: (nnzb,) first sorted entry of each block where entries share blocks (summed),
            else None (then entry places are block places).
    """

    n_atoms: int
    i: np.ndarray
    j: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    entry: np.ndarray
    starts: np.ndarray | None

    @property
    def n_pairs(self) -> int:
        return int(self.i.shape[0])

    @property
    def n_blocks(self) -> int:
        return int(self.indices.shape[0])


SORT_PROBE_KEYS = 2**15
"""A process picks its sort of block keys at its first call with at least this many keys."""

_sort_way: str | None = None
""""packed" or "radix": the faster sort of 32-bit block keys on this CPU, timed once per process."""


def _packed_sort(key: np.ndarray):
    """Keys packed with their positions into 64-bit words, key high, position low, sorted by value
    (``np.sort``, vectorised: ~2.3x faster than ``np.argsort`` at 130,000 entries where numpy's
    SIMD sort is fast). Returns (order, key[order]) for keys that are all different."""
    w = key.astype(np.int64)
    w <<= 32
    w |= np.arange(key.shape[0], dtype=np.int64)
    w.sort()
    halves = w.view(np.int32).reshape(-1, 2)  # (low, high) words on a little-endian host
    lo, hi = (0, 1) if np.little_endian else (1, 0)
    return halves[:, lo].copy(), halves[:, hi].copy()


def _radix_sort(key: np.ndarray):
    """``np.argsort(key, kind="stable")`` of non-negative 32-bit keys as two passes of numpy's
    radix sort (its stable sort of 16-bit integers): low half-word, then high. On CPUs whose
    AVX-512 compress-store is microcoded (AMD Zen 4) numpy's vectorised ``np.sort`` of 64-bit
    words is ~2.3x slower than this (7.3 vs 3.2 ms at 153,000 keys); elsewhere it is faster."""
    u = key.view(np.uint32)
    digit = np.empty(key.shape[0], np.uint16)
    np.bitwise_and(u, 0xFFFF, out=digit, casting="unsafe")
    order = np.argsort(digit, kind="stable")
    np.right_shift(u, 16, out=digit, casting="unsafe")
    order = order[np.argsort(digit[order], kind="stable")]
    return order, key[order]


def _sort_int32_keys(key: np.ndarray):
    """(order, key[order]) by this process's faster sort; the first call with at least
    ``SORT_PROBE_KEYS`` keys times both on up to 4x that many of them (a few ms, once) and keeps
    the faster. Both give the one sorted order where the keys differ, so the choice changes the
    time, never the result."""
    global _sort_way
    if _sort_way is None and key.shape[0] >= SORT_PROBE_KEYS:
        probe = key[: 4 * SORT_PROBE_KEYS]
        seconds = {}
        for way, f in (("radix", _radix_sort), ("packed", _packed_sort), ("radix", _radix_sort)):
            t0 = time.perf_counter()
            f(probe)
            seconds[way] = min(seconds.get(way, np.inf), time.perf_counter() - t0)
        _sort_way = min(seconds, key=seconds.get)
    return (_radix_sort if _sort_way == "radix" else _packed_sort)(key)


def _sort_keys(key: np.ndarray):
    """(order, key[order]): ``np.argsort(key)`` and the sorted keys.

    Non-negative 32-bit keys (N <= 46340) of fewer than 2^31 entries go through the faster of two sorts on
    this CPU (``_sort_int32_keys``). Where all keys differ that is the one order ``np.argsort``
    can give; where some repeat (images of one pair in a small cell) the order of equal keys
    fixes the order their blocks are summed in, so then ``np.argsort``'s own order is taken, as
    before: the same numbers bit for bit either way."""
    if key.dtype == np.int32 and key.shape[0] < 2**31 and (key.shape[0] == 0 or key.min() >= 0):
        order, skey = _sort_int32_keys(key)
        if not (skey[1:] == skey[:-1]).any():
            return order, skey
        del order, skey
    order = np.argsort(key)
    return order, key[order]


def bsr_pattern(i, j, n_atoms: int) -> BsrPattern:
    """Sort the integer block keys of pairs (i, j) (host); no block is touched."""
    n, p = n_atoms, len(i)
    m = 2 * p + n
    kt = np.int32 if n * n < 2**31 else np.int64  # 32-bit keys sort ~1.6x faster (N <= 46340)
    key = np.empty(m, kt)  # [i n + j, j n + i, a n + a], built in place (no int64 temporaries)
    for lo, a, b in ((0, i, j), (p, j, i)):
        k = key[lo : lo + p]
        k[:] = a
        k *= n
        k += b
    key[2 * p :] = np.arange(n, dtype=kt) * (n + 1)
    et = np.int32 if m < 2**31 else np.int64
    order, key = _sort_keys(key)
    entry = np.empty(m, et)
    entry[order] = np.arange(m, dtype=et)
    del order
    starts = None
    dup = key[1:] == key[:-1]
    if dup.any():
        starts = np.flatnonzero(np.concatenate([[True], ~dup]))
        key = key[starts]
    del dup
    indptr = np.empty(n + 1, np.int64)
    indptr[:n] = np.searchsorted(key, np.arange(n, dtype=kt) * n)
    indptr[n] = key.shape[0]
    indices = np.empty(key.shape[0], np.int32)
    np.remainder(key, n, out=indices, casting="unsafe")  # < N: fits
    return BsrPattern(n, i, j, indptr, indices, entry, starts)


def host_segment_sum(K: np.ndarray, index: np.ndarray, n_atoms: int) -> np.ndarray:
    """(N, 3, 3) sums of the (p, 3, 3) blocks K over each atom's ``index`` entries, on the host.

    One ``np.bincount`` per component: it adds the weights in input order into zeros, as
    ``np.add.at`` on zeros and ``jax.ops.segment_sum`` do, so for float64 blocks the sums are
    the same bit for bit (tests/test_bsr_fastpaths.py checks it), ~3x faster than ``np.add.at``
    (docs/benchmarks.md). float64 only: ``np.bincount`` adds in float64, which would round
    float32 blocks differently."""
    if K.dtype != np.float64:
        raise TypeError(f"host_segment_sum: float64 blocks only; got {K.dtype}")
    Kf = K.reshape(-1, 9)
    out = np.empty((n_atoms, 9), K.dtype)
    for c in range(9):
        out[:, c] = np.bincount(index, Kf[:, c], minlength=n_atoms)
    return out.reshape(n_atoms, 3, 3)


def _as_block_items(a: np.ndarray) -> np.ndarray:
    """(m, 3, 3) C-contiguous blocks viewed as (m,) opaque 9-number items (no copy)."""
    return a.reshape(-1, 9).view(np.dtype((np.void, 9 * a.itemsize))).reshape(-1)


def put_blocks(buf: np.ndarray, rows: np.ndarray, blocks: np.ndarray) -> None:
    """buf[rows] = blocks for (m, 3, 3) blocks, copied as whole 9-number items with ``np.put``:
    the same bytes as the fancy-index assignment, ~2.5x faster (a (3, 3) sub-array per index
    goes through numpy's general strided copy; docs/benchmarks.md)."""
    blocks = np.ascontiguousarray(blocks, buf.dtype)
    if blocks.shape != (rows.shape[0], 3, 3):  # np.put would repeat a short ``blocks`` silently
        raise ValueError(f"put_blocks: {rows.shape[0]} rows for blocks of shape {blocks.shape}")
    if blocks.shape[0]:
        np.put(_as_block_items(buf), rows, _as_block_items(blocks))


@partial(jit, donate_argnums=(0, 1))
def _add_diagonal(di, dj, K, i, j):
    """Continue the two scatter-adds of ``diagonal_blocks`` with the next chunk of pairs (the
    same additions in the same order as one call over the whole list)."""
    return di.at[i].add(K), dj.at[j].add(K)


class BsrAssembly:
    """A canonical scipy BSR (blocksize (3, 3); block rows sorted, duplicate blocks summed)
    filled from chunks of pair blocks, in order, into a preallocated data array.

    ``add(K, i, j)`` takes the next chunk: K (c, 3, 3) pair blocks (device or host; rows beyond
    the real pairs are padding, zero) and their (padded) indices i, j on the same side;
    ``to_bsr()`` puts the diagonal blocks H_ii = sum of K over the pairs containing i and
    returns the matrix. Peak memory: the output, the pattern's integers and one chunk.
    """

    def __init__(self, i, j, n_atoms: int, dtype, pattern: BsrPattern | None = None):
        self.pattern = bsr_pattern(i, j, n_atoms) if pattern is None else pattern
        pt = self.pattern
        self.dtype = np.dtype(dtype)
        n_rows = pt.entry.shape[0] if pt.starts is not None else pt.n_blocks
        self.buf = np.empty((n_rows, 3, 3), self.dtype)  # pages are touched as blocks arrive
        self.done = 0
        self.host = pt.n_pairs < HOST_BSR_MAX_PAIRS
        self.diag = None

    def add(self, K, i=None, j=None, *, sum_diagonal: bool = True):
        pt, lo = self.pattern, self.done
        p = pt.n_pairs
        Kh = np.asarray(K)
        m = min(Kh.shape[0], p - lo)
        Kh = Kh[:m]
        hi = lo + m
        if not sum_diagonal:
            pass
        elif self.host:
            if self.diag is None and self.dtype == np.float64:  # the first chunk: sums from zero
                ends = (pt.i[lo:hi], pt.j[lo:hi])  # the order of diagonal_blocks' two sums
                self.diag = np.stack([host_segment_sum(Kh, ix, pt.n_atoms) for ix in ends])
            else:  # float32 (np.bincount sums in float64), or a later chunk: adds, in pair order
                if self.diag is None:
                    self.diag = np.zeros((2, pt.n_atoms, 3, 3), self.dtype)
                np.add.at(self.diag[0], pt.i[lo:hi], Kh)  # the order of diagonal_blocks' two segment
                np.add.at(self.diag[1], pt.j[lo:hi], Kh)  # sums: the same numbers, bit for bit
        else:
            if self.diag is None:
                z = np.zeros((pt.n_atoms, 3, 3), self.dtype)  # device_put: no eager compile (_device.py)
                self.diag = (jax.device_put(z), jax.device_put(z))
            self.diag = _add_diagonal(*self.diag, to_device(K), to_device(i), to_device(j))
        negK = np.negative(Kh)  # off-diagonal blocks are -K
        put_blocks(self.buf, pt.entry[lo:hi], negK)
        put_blocks(self.buf, pt.entry[p + lo : p + hi], negK)
        self.done = hi

    def to_bsr(self, diag=None) -> scipy.sparse.bsr_matrix:
        """The matrix; ``diag``: (N, 3, 3) diagonal blocks to put instead of the sums formed."""
        pt = self.pattern
        n, p = pt.n_atoms, pt.n_pairs
        if self.done != p:
            raise RuntimeError(f"BsrAssembly: {self.done} of {p} pair blocks added")
        if diag is not None:
            pass
        elif self.diag is None:
            diag = np.zeros((n, 3, 3), self.dtype)
        elif self.host:
            diag = self.diag[0] + self.diag[1]
        else:
            diag = np.asarray(self.diag[0]) + np.asarray(self.diag[1])
        self.diag = None
        put_blocks(self.buf, pt.entry[2 * p :], diag)
        data, self.buf = self.buf, None
        if pt.starts is not None:
            data = np.add.reduceat(data, pt.starts, axis=0)
        M = scipy.sparse.bsr_matrix((data, pt.indices, pt.indptr), shape=(3 * n, 3 * n))
        M.has_sorted_indices = True
        return M


def bsr_from_blocks(K, diag, i, j, n_atoms: int) -> scipy.sparse.bsr_matrix:
    """Canonical scipy BSR (blocksize (3, 3); block rows sorted, duplicate blocks summed) from
    host arrays.

    Args:
        K: (p, 3, 3) numpy pair blocks; diag: (N, 3, 3) numpy diagonal blocks.
    """
    K = np.asarray(K)
    asm = BsrAssembly(i, j, n_atoms, K.dtype)
    asm.add(K, sum_diagonal=False)
    return asm.to_bsr(np.asarray(diag))


def bsr_from_device_blocks(K, i, j, pairs_i, pairs_j, n_atoms: int) -> scipy.sparse.bsr_matrix:
    """Canonical BSR from padded blocks already computed for the whole list (batched frames).

    Args:
        K: (capacity, 3, 3) device blocks, zero beyond the p real pairs; i, j: their padded
            device indices. pairs_i, pairs_j: the p real pairs (host).
    """
    asm = BsrAssembly(pairs_i, pairs_j, n_atoms, K.dtype)
    asm.add(K, i, j)
    return asm.to_bsr()

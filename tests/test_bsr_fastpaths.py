"""The host fast paths of the streamed BSR assembly give the same bytes as the plain numpy they
replace (issue 14, item 5: per-frame time of small frames).

- ``host_segment_sum`` (np.bincount) == np.add.at == jax.ops.segment_sum, bit for bit (float64);
- ``_sort_keys`` (packed 64-bit sort or two 16-bit radix passes, whichever the CPU runs faster)
  == np.argsort's order where keys are unique, and np.argsort's own order where they repeat;
- ``put_blocks`` (np.put of 72-byte items) == fancy-index assignment; a length mismatch raises;
- ``neighbor_pairs(keep=...)`` == ``neighbor_pairs().select(...)`` (vesin, free space, and the
  direct image enumeration of small cells);
- ``release_freed_memory`` skips the trim below ``TRIM_MIN_PAIRS`` and trims above it;
- a whole ``hessian(format="bsr")`` equals a BSR assembled here with the plain numpy calls.
"""

import jax
import numpy as np
import pytest
import scipy.sparse

import mdhess
from mdhess.pair import _assembly, _layouts, _pairs
from mdhess.pair._prepare import Prepared


def blocks(p, seed=0):
    K = np.random.default_rng(seed).normal(size=(p, 3, 3))
    return K + K.transpose(0, 2, 1)


def test_host_segment_sum_is_add_at_bit_for_bit():
    rng = np.random.default_rng(1)
    n, p = 50, 4000  # ~80 entries an atom: many additions whose order shows in the last bits
    K, idx = blocks(p), rng.integers(0, n, p).astype(np.int32)
    ref = np.zeros((n, 3, 3))
    np.add.at(ref, idx, K)
    got = _layouts.host_segment_sum(K, idx, n)
    assert np.array_equal(got, ref)
    assert np.array_equal(got, np.asarray(jax.ops.segment_sum(K, idx, n)))
    with pytest.raises(TypeError, match="float64"):
        _layouts.host_segment_sum(K.astype(np.float32), idx, n)


@pytest.mark.parametrize("way", ["packed", "radix"])
@pytest.mark.parametrize("repeats", [False, True])
def test_sort_keys_is_argsort(repeats, way, monkeypatch):
    monkeypatch.setattr(_layouts, "_sort_way", way)  # either sort of 32-bit keys, whichever this CPU prefers
    rng = np.random.default_rng(2)
    key = rng.permutation(70002).astype(np.int32) * 7 + 65530  # both 16-bit halves vary
    if repeats:
        key[::3] = key[1::3][: key[::3].shape[0]]
    order, skey = _layouts._sort_keys(key)
    ref = np.argsort(key)
    assert np.array_equal(order, ref) and np.array_equal(skey, key[ref])
    k64 = key.astype(np.int64)  # 64-bit keys (N > 46340): np.argsort itself
    order, skey = _layouts._sort_keys(k64)
    assert np.array_equal(order, np.argsort(k64)) and np.array_equal(skey, k64[order])


def test_sort_keys_picks_a_sort_once_and_keeps_it(monkeypatch):
    """The first call with SORT_PROBE_KEYS keys or more times both sorts and keeps the faster;
    smaller calls before it do not choose; the result is np.argsort's order whichever wins."""
    monkeypatch.setattr(_layouts, "_sort_way", None)
    monkeypatch.setattr(_layouts, "SORT_PROBE_KEYS", 4096)
    rng = np.random.default_rng(5)
    small = rng.permutation(1000).astype(np.int32)
    assert np.array_equal(_layouts._sort_keys(small)[0], np.argsort(small))
    assert _layouts._sort_way is None
    key = rng.permutation(20000).astype(np.int32) * 3
    order, skey = _layouts._sort_keys(key)
    assert _layouts._sort_way in ("packed", "radix")
    assert np.array_equal(order, np.argsort(key)) and np.array_equal(skey, np.sort(key))
    neg = key - 30000  # negative keys are never given to the radix sort (its halves are unsigned)
    monkeypatch.setattr(_layouts, "_sort_way", "radix")
    order, skey = _layouts._sort_keys(neg)
    assert np.array_equal(order, np.argsort(neg)) and np.array_equal(skey, np.sort(neg))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_put_blocks_is_fancy_assignment(dtype):
    rng = np.random.default_rng(3)
    K = blocks(300).astype(dtype)
    rows = rng.permutation(500)[:300]
    ref, got = np.zeros((500, 3, 3), dtype), np.zeros((500, 3, 3), dtype)
    ref[rows] = K
    _layouts.put_blocks(got, rows, K)
    assert np.array_equal(got, ref)
    _layouts.put_blocks(got, rows[:0], K[:0])  # nothing to put
    with pytest.raises(ValueError, match="rows for blocks"):
        _layouts.put_blocks(got, rows, K[:10])


TRICLINIC = np.array([[6.0, 0, 0], [1.2, 6.0, 0], [0.6, 1.8, 6.0]])


@pytest.mark.parametrize(
    "cell,rc", [(None, 1.5), (TRICLINIC, 1.5), (TRICLINIC / 8, 1.5)], ids=["free", "triclinic", "lattice"]
)
def test_neighbor_pairs_keep_is_select(cell, rc):
    R = np.random.default_rng(4).uniform(0, 6, (150, 3))
    if cell is not None:
        R = R / 6 @ cell
    s = np.arange(150) % 2

    def keep(i, j, r):
        return r < np.where((s[i] == 1) & (s[j] == 1), 0.8 * rc, rc)

    full = _pairs.neighbor_pairs(R, cell, rc)
    ref = full.select(keep(full.i, full.j, full.distances))
    got = _pairs.neighbor_pairs(R, cell, rc, keep=keep)
    assert 0 < got.n_pairs < full.n_pairs
    for name in ("i", "j", "shift", "distances"):
        a, b = getattr(got, name), getattr(ref, name)
        assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b)), name


def test_trim_only_for_large_lists(monkeypatch):
    import ctypes

    calls = []

    class Libc:
        def malloc_trim(self, pad):
            calls.append(pad)

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    _assembly.release_freed_memory(_assembly.TRIM_MIN_PAIRS - 1)
    assert calls == []
    _assembly.release_freed_memory(_assembly.TRIM_MIN_PAIRS)
    _assembly.release_freed_memory()
    assert calls == [0, 0]


def plain_bsr(i, j, n, K):
    """The assembly before the fast paths: np.argsort, np.add.at and fancy-index writes."""
    key = np.concatenate([i.astype(np.int64) * n + j, j.astype(np.int64) * n + i, np.arange(n) * (n + 1)])
    order = np.argsort(key.astype(np.int32))
    diag = np.zeros((2, n, 3, 3))
    np.add.at(diag[0], i, K)
    np.add.at(diag[1], j, K)
    src = np.concatenate([-K, -K, diag[0] + diag[1]])
    data, skey = src[order], key[order]
    starts = np.flatnonzero(np.concatenate([[True], skey[1:] != skey[:-1]]))
    data, skey = np.add.reduceat(data, starts, axis=0), skey[starts]
    indptr = np.searchsorted(skey, np.arange(n + 1) * n)
    return data, (skey % n).astype(np.int32), indptr


@pytest.mark.parametrize("cells", [2, 4])  # 2: cutoff beyond half the box, image duplicates summed
def test_hessian_bsr_equals_plain_assembly(cells):
    b = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = (g + b[None]).reshape(-1, 3) * 1.55 + np.random.default_rng(5).normal(scale=0.03, size=(4 * cells**3, 3))
    L, lj = cells * 1.55, mdhess.lennard_jones(cutoff=2.5)
    M = mdhess.hessian(lj, R, box=L, format="bsr")
    p = Prepared(lj, R, L, None, "test")
    from mdhess.pair._compute import blocks_and_check

    # the blocks from the one kernel at the padded length the call used (one chunk): the same
    # numbers, so the two assemblies must agree bit for bit
    pot, Rd, s, i, j, shift, mask = p.arrays(np.float64)
    Kp = np.asarray(blocks_and_check(pot, Rd, s, i, j, shift, mask)[0])[: p.n_pairs]
    data, indices, indptr = plain_bsr(p.pairs.i, p.pairs.j, len(R), Kp)
    assert isinstance(M, scipy.sparse.bsr_matrix) and M.has_canonical_format
    assert np.array_equal(M.indptr, indptr) and np.array_equal(M.indices, indices)
    assert np.array_equal(M.data, data)

"""Pair enumeration: all pairs (no cutoff) or a neighbour list within a cutoff.

Host-side lists (the public, non-jitted API) come from ``vesin``: a compiled cell list that
handles any cell (orthorhombic or triclinic), returns integer image shifts, and therefore gives
the right answer in small cells whose cutoff exceeds half the box (every image within the cutoff
is listed, duplicate (i, j) pairs with different shifts included) as long as the cutoff stays
within ``VESIN_MAX_CUTOFF_WIDTHS`` perpendicular cell widths; beyond that the images are
enumerated directly (``lattice_pairs``). It is the fastest of the lists compared in
docs/pairs.md ("Pair enumeration"). Before a periodic list is built its size is estimated and a
list that cannot fit the memory limit is refused (``_planner.check_pair_list_memory``), as is a cell too
skewed to scan (``check_cell_images``).

Lists that must live inside ``jax.jit`` (GPU, MD loops) use jax-md's neighbour list with a
fixed capacity; see ``mdhess.plugins.jax_md``.

Each unordered pair (or atom-image pair) appears once; the displacement is
``d = r_j - r_i + shift`` with ``shift = S @ cell``.
"""

from dataclasses import dataclass

import numpy as np

from .._errors import InputError
from ._geometry import image_counts, perpendicular_widths


@dataclass(frozen=True)
class PairList:
    """Half list of interacting pairs.

    Attributes:
        i, j: (p,) int32 atom indices.
        shift: (p, 3) float64 Cartesian image shifts, or None in free space.
        n_atoms: N.
        distances: (p,) pair distances when the enumeration computed them, else None.
    """

    i: np.ndarray
    j: np.ndarray
    shift: np.ndarray | None
    n_atoms: int
    distances: np.ndarray | None = None

    @property
    def n_pairs(self) -> int:
        return int(self.i.shape[0])

    def displacements(self, positions: np.ndarray) -> np.ndarray:
        """d_p3 = r_j - r_i + shift, float64 numpy."""
        d = positions[self.j] - positions[self.i]
        if self.shift is not None:
            d = d + self.shift
        return d

    def select(self, keep: np.ndarray) -> "PairList":
        return PairList(
            self.i[keep],
            self.j[keep],
            None if self.shift is None else self.shift[keep],
            self.n_atoms,
            None if self.distances is None else self.distances[keep],
        )


def all_pairs(n_atoms: int) -> PairList:
    """Every unordered pair i < j (free space, no cutoff)."""
    i, j = np.triu_indices(n_atoms, k=1)
    return PairList(i.astype(np.int32), j.astype(np.int32), None, n_atoms)


VESIN_MAX_CUTOFF_WIDTHS = 100.0
"""vesin's periodic list is used while cutoff <= this many shortest perpendicular cell heights;
beyond it the images are enumerated here (``lattice_pairs``). Checked against a brute-force
lattice sum up to 100 heights, orthorhombic and triclinic (docs/pairs.md, "Small cells"); far
beyond (a cutoff of 1e10 in a cell of 1.9) vesin lists image shifts of +-2 cells only."""

MAX_IMAGE_SCAN_RATIO = 1000.0
"""A cell whose image scan (prod(2 ceil(rc / h_k) + 1) shifts) exceeds this many times the
lattice points inside the cutoff sphere is refused as too skewed (``check_cell_images``)."""

def check_cell_images(cell: np.ndarray, cutoff: float, *, call: str) -> None:
    """Refuse a cell so skewed (a perpendicular height tiny beside its edges) that finding the
    images within the cutoff means scanning far more image shifts than there are images."""
    h, _, scanned, inside = image_counts(cell, cutoff)
    if not np.isfinite(scanned) or scanned > MAX_IMAGE_SCAN_RATIO * max(1.0, inside):
        edges = np.linalg.norm(cell, axis=1)
        raise InputError(
            f"{call}(box=...) is a cell too skewed for cutoff {cutoff:g}: its perpendicular heights "
            f"{np.array2string(h, precision=4)} are tiny beside its edge lengths "
            f"{np.array2string(edges, precision=4)}, so listing the images within the cutoff would scan "
            f"{scanned:.3g} image shifts for about {inside:.3g} lattice points inside it. Box: {cell.tolist()}. "
            "Use a reduced cell of the same lattice (e.g. ase.build.niggli_reduce) or check the cell vectors."
        )


def neighbor_pairs(positions: np.ndarray, cell: np.ndarray | None, cutoff: float, *, call: str = "mdhess",
                   keep=None) -> PairList:  # fmt: skip
    """All atom (or atom-image) pairs closer than ``cutoff``, each counted once.

    Args:
        positions: (N, 3) float64.
        cell: None (free space) or (3, 3) cell with cell vectors as rows (periodic in 3D).
        cutoff: length units, > 0.
        call: the public call named in errors.
        keep: None, or ``keep(i, j, r)`` -> (p,) bool: which of the listed pairs (int32 indices,
            float64 distances) to return; the others are dropped before their shifts are formed
            (the same list as ``select`` afterwards, ~15% faster: docs/benchmarks.md).
    """
    n = positions.shape[0]
    if cell is not None:
        check_cell_images(cell, cutoff, call=call)
        if cutoff > VESIN_MAX_CUTOFF_WIDTHS * perpendicular_widths(cell).min():
            pl = lattice_pairs(positions, cell, cutoff)
            return pl if keep is None else pl.select(keep(pl.i, pl.j, pl.distances))
    import vesin  # compiled neighbour list; imported here to keep `import mdhess` light

    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    # copy=False: views of nl's buffers, alive as long as nl (this call); every array returned
    # below is a new one
    if cell is None:
        box = np.zeros((3, 3))
        i, j, r = nl.compute(points=positions, box=box, periodic=False, quantities="ijd", copy=False)
        S = None
    else:
        # Small cells: an atom may pair with several images of another atom, and with its own
        # images (constant energy; their blocks cancel exactly in the diagonal). All are kept.
        i, j, S, r = nl.compute(points=positions, box=cell, periodic=True, quantities="ijSd", copy=False)
    i, j = i.astype(np.int32), j.astype(np.int32)
    if keep is None:
        r = r.copy()
    else:
        rows = np.flatnonzero(keep(i, j, r))
        i, j, r = i[rows], j[rows], r[rows]
        S = None if S is None else S[rows]
    shift = None if S is None else _cartesian_shifts(S, cell)
    return PairList(i, j, shift, n, r)


def _cartesian_shifts(S, cell):
    if np.count_nonzero(cell - np.diag(np.diag(cell))) == 0:  # orthorhombic: one multiply
        return S * np.diag(cell)
    return np.einsum("pk,kc->pc", S, cell)  # numpy matmul with a 3-wide inner axis is slow


LATTICE_CHUNK = 2**21
"""Atom-pair x image-shift candidates examined at once by ``lattice_pairs`` (about 50 MB)."""


def lattice_pairs(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> PairList:
    """Every atom-image pair within ``cutoff`` by direct enumeration of the image shifts
    |S_k| <= ceil(rc / h_k) (h_k the perpendicular heights), vectorised over shifts.

    O(N^2 x shifts): used for small cells whose cutoff spans several cell widths, where the scan is
    about four times the number of pairs found. Half list: pairs i < j with every shift, and an
    atom with its own images for the lexicographically positive shifts only.
    """
    n = positions.shape[0]
    _, nk, _, _ = image_counts(cell, cutoff)
    axes = [np.arange(-int(m), int(m) + 1) for m in nk]
    S = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    positive = (S[:, 0] > 0) | ((S[:, 0] == 0) & ((S[:, 1] > 0) | ((S[:, 1] == 0) & (S[:, 2] > 0))))
    T = S @ cell
    ii, jj = np.triu_indices(n, k=0)
    D0 = positions[jj] - positions[ii]
    same = ii == jj
    rc2 = float(cutoff) ** 2
    m = max(1, LATTICE_CHUNK // max(1, ii.size))
    out_p, out_s, out_r = [], [], []
    for a in range(0, S.shape[0], m):
        d = D0[None, :, :] + T[a : a + m, None, :]
        r2 = np.einsum("spc,spc->sp", d, d)
        keep = (r2 < rc2) & (~same[None, :] | positive[a : a + m, None])
        s_idx, p_idx = np.nonzero(keep)
        out_p.append(p_idx)
        out_s.append(s_idx + a)
        out_r.append(np.sqrt(r2[s_idx, p_idx]))
    p = np.concatenate(out_p)
    s = np.concatenate(out_s)
    order = np.lexsort((s, p))  # by atom pair, then shift: a stable, reproducible order
    p, s = p[order], s[order]
    return PairList(
        ii[p].astype(np.int32),
        jj[p].astype(np.int32),
        _cartesian_shifts(S[s].astype(np.float64), cell),
        n,
        np.concatenate(out_r)[order],
    )


def check_periodic_cutoff(cell: np.ndarray, cutoff: float, *, call: str) -> None:
    """For minimum-image code paths (jit, jax-md spaces): the cutoff must not exceed half the
    shortest perpendicular cell width. Host-side lists sum every image and do not need this."""
    w = perpendicular_widths(cell).min()
    if cutoff > 0.5 * w:
        raise InputError(
            f"{call}: cutoff {cutoff:g} exceeds half the shortest perpendicular cell width ({0.5 * w:g}); "
            "the minimum-image convention would miss periodic images. Use mdhess.hessian/energy "
            "(which sum every image) or a larger cell."
        )


def bucket(n: int, minimum: int = 64) -> int:
    """Capacity for n items: the next of 2^(k/4) (<= 19% padding), so that jitted functions are
    reused across frames and structures of similar size instead of recompiling for each."""
    if n <= minimum:
        return minimum
    k = int(np.ceil(4 * np.log2(n)))
    cap = int(np.ceil(2 ** (k / 4)))
    while cap < n:  # guard against floating point rounding
        k += 1
        cap = int(np.ceil(2 ** (k / 4)))
    return cap


def padded(pairs: PairList, capacity: int):
    """(i, j, shift, mask) arrays padded to ``capacity``; padding pairs are (0, 0) with mask False."""
    p = pairs.n_pairs
    pad = capacity - p
    i = np.concatenate([pairs.i, np.zeros(pad, np.int32)])
    j = np.concatenate([pairs.j, np.zeros(pad, np.int32)])
    shift = np.zeros((capacity, 3)) if pairs.shift is None else np.concatenate([pairs.shift, np.zeros((pad, 3))])
    mask = np.arange(capacity) < p
    return i, j, shift, mask


NEIGHBOR_LIST_FORMATS = ("Dense", "Sparse", "OrderedSparse")
"""jax-md neighbour-list formats that ``neighbor_list_half_pairs`` decodes."""


def neighbor_list_half_pairs(neighbor, n_atoms: int, *, call: str):
    """(i, j, mask): each unordered pair of a jax-md neighbour list once (i < j); traceable under jit.

    The one decoder of jax-md lists (the jax-md plugin and ``energy_fn`` both use it). Dense lists
    (N, M) and Sparse lists (2, C) hold every pair from both ends, OrderedSparse once (i < j);
    padding entries (index N) and the second copy are masked (mask False, i = j = 0). The format
    is read from ``neighbor.format.name``, so jax_md itself is not imported here.
    """
    import jax.numpy as jnp

    idx = neighbor.idx
    fmt = getattr(getattr(neighbor, "format", None), "name", "Dense")
    if fmt == "Dense":
        i = jnp.broadcast_to(jnp.arange(n_atoms, dtype=idx.dtype)[:, None], idx.shape).ravel()
        j = idx.ravel()
    elif fmt in ("Sparse", "OrderedSparse"):
        i, j = idx[0], idx[1]
    else:
        raise InputError(f"{call}(neighbor=...) has an unknown jax-md neighbour list format {fmt!r}")
    mask = (i < n_atoms) & (j < n_atoms) & (i < j)
    return jnp.where(mask, i, 0), jnp.where(mask, j, 0), mask

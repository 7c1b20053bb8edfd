"""Pair enumeration: all pairs (no cutoff) or a neighbour list within a cutoff.

Host-side lists (the public, non-jitted API) come from ``vesin``: a compiled cell list that
handles any cell (orthorhombic or triclinic), returns integer image shifts, and therefore gives
the right answer in small cells whose cutoff exceeds half the box (every image within the cutoff
is listed, duplicate (i, j) pairs with different shifts included). It is the fastest of the
lists compared in docs/pairs.md ("Pair enumeration").

Lists that must live inside ``jax.jit`` (GPU, MD loops) use jax-md's neighbour list with a
fixed capacity; see ``mdhess.plugins.jax_md``.

Each unordered pair (or atom-image pair) appears once; the displacement is
``d = r_j - r_i + shift`` with ``shift = S @ cell``.
"""

from dataclasses import dataclass

import numpy as np

from .._errors import InputError
from ._geometry import perpendicular_widths


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


def neighbor_pairs(positions: np.ndarray, cell: np.ndarray | None, cutoff: float) -> PairList:
    """All atom (or atom-image) pairs closer than ``cutoff``, each counted once.

    Args:
        positions: (N, 3) float64.
        cell: None (free space) or (3, 3) cell with cell vectors as rows (periodic in 3D).
        cutoff: length units, > 0.
    """
    import vesin  # compiled neighbour list; imported here to keep `import mdhess` light

    n = positions.shape[0]
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    if cell is None:
        i, j, r = nl.compute(points=positions, box=np.zeros((3, 3)), periodic=False, quantities="ijd")
        shift = None
    else:
        # Small cells: an atom may pair with several images of another atom, and with its own
        # images (constant energy; their blocks cancel exactly in the diagonal). All are kept.
        i, j, S, r = nl.compute(points=positions, box=cell, periodic=True, quantities="ijSd")
        if np.count_nonzero(cell - np.diag(np.diag(cell))) == 0:  # orthorhombic: one multiply
            shift = S * np.diag(cell)
        else:  # numpy matmul with a 3-wide inner axis is slow; einsum is 3x faster
            shift = np.einsum("pk,kc->pc", S, cell)
    return PairList(i.astype(np.int32), j.astype(np.int32), shift, n, r)


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

"""Input checking and preparation for the pair engine's public calls.

``Prepared`` validates a call's inputs on the host (clear errors naming the argument), resolves
the box into a cell and builds the pair list once; ``arrays`` hands the jitted kernels device
arrays padded to a bucketed capacity, so compiled functions are reused across similar sizes.
Value-dependent failures that come back from jitted code as data are raised here
(``raise_nonfinite``).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positions
from .._device import is_floating, to_device
from .._errors import InputError, NonFiniteError
from ._geometry import as_cell
from ._pairs import PairList, bucket, padded
from ._potential import check_potential


def check_species(species, n_atoms: int, potential, *, call: str) -> np.ndarray:
    """(N,) int32 species indices inside the potential's tables; None means all species 0."""
    if species is None:
        s = np.zeros(n_atoms, dtype=np.int32)
    else:
        s0 = np.asarray(species)
        if s0.shape != (n_atoms,):
            raise InputError(f"{call}(species=...) expects shape ({n_atoms},) (one per atom); got {s0.shape}")
        if s0.size and not np.issubdtype(s0.dtype, np.integer):
            if not np.all(np.mod(s0, 1) == 0):
                raise InputError(f"{call}(species=...) must be integers 0..S-1; got dtype {s0.dtype}")
        s = s0.astype(np.int32)
    S = potential.n_species
    hi = S if S is not None else np.iinfo(np.int32).max
    bad = (s < 0) | (s >= hi)
    if bad.any():
        a = int(np.argmax(bad))
        raise InputError(
            f"{call}(species=...) value {int(s[a])} at atom {a} is outside the potential's parameter "
            f"table (species 0..{hi - 1})"
        )
    return s


def resolve_dtype(dtype, call: str):
    """float64 (None, when x64 is on), float32 or float64; anything else is an InputError."""
    if dtype is None:
        return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise InputError(f"{call}(dtype=...) must be float32 or float64; got {dtype!r}") from exc
    if dt not in (np.float32, np.float64):
        raise InputError(f"{call}(dtype=...) must be float32 or float64; got {dt}")
    if dt == np.float64 and not jax.config.read("jax_enable_x64"):
        raise InputError(f"{call}(dtype=float64) needs jax_enable_x64 (mdhess enables it on import unless MDHESS_NO_X64 is set)")
    return dt


def cast_potential(potential, dtype):
    """The potential's floating-point leaves in ``dtype`` (integer leaves such as bond indices kept)."""
    return jax.tree.map(lambda x: to_device(x, dtype) if is_floating(x) else x, potential)


def raise_nonfinite(call: str, what: str):
    """The NonFiniteError of a call whose ``what`` came out NaN or infinite."""
    raise NonFiniteError(
        f"{call}: non-finite {what} (NaN or inf); check for overlapping atoms or parameters that make "
        "the potential singular at these distances"
    )


class Prepared:
    """Validated inputs and the host-side pair list of one call.

    Attributes:
        potential, call: as given. cell: None or the (3, 3) cell. R: (N, 3) float64 positions.
        species: (N,) int32. n_atoms: N. all_pairs: every pair interacts (no list is built).
        pairs: the ``PairList`` (built on first use).
    """

    def __init__(self, potential, positions, box, species, call):
        self.potential = check_potential(potential, call)
        self.call = call
        self.cell = as_cell(box, call=call)
        # a periodic cell may hold one atom (it interacts with its own images)
        self.R = check_positions(positions, call=call, min_atoms=1 if self.cell is not None else 2)
        self.species = check_species(species, self.R.shape[0], potential, call=call)
        self.n_atoms = self.R.shape[0]
        # free space, no cutoff: every pair interacts; the dense layout never needs the list
        self.all_pairs = potential.all_pairs
        if self.all_pairs:
            if self.cell is not None:
                potential.pair_list(self.R, self.cell, self.species, call=call)  # raises: periodic needs a cutoff
            self._check_coincident_all()
        else:
            self._check_coincident_list()

    @functools.cached_property
    def pairs(self) -> PairList:
        return self.potential.pair_list(self.R, self.cell, self.species, call=self.call)

    @property
    def n_pairs(self) -> int:
        """Interacting pairs (all N(N-1)/2 when every pair interacts; no list is built then)."""
        return self.n_atoms * (self.n_atoms - 1) // 2 if self.all_pairs else self.pairs.n_pairs

    def _coincident(self, a, b, shift=None):
        where = "" if shift is None else f" (image shift {np.asarray(shift).tolist()})"
        raise InputError(
            f"{self.call}(positions=...) has interacting atoms {a} and {b} at the same position{where}: "
            f"{self.R[a].tolist()}"
        )

    def _tiny(self) -> float:
        return 1e-12 * max(1.0, float(np.abs(self.R).max()))

    def _check_coincident_all(self):
        from scipy.spatial import cKDTree

        dist, idx = cKDTree(self.R).query(self.R, k=2)
        a = int(np.argmin(dist[:, 1]))
        if dist[a, 1] <= self._tiny():
            self._coincident(*sorted((a, int(idx[a, 1]))))

    def _check_coincident_list(self):
        pl = self.pairs
        if pl.n_pairs:
            r = pl.distances if pl.distances is not None else np.linalg.norm(pl.displacements(self.R), axis=1)
            p = int(np.argmin(r))
            if r[p] <= self._tiny():
                self._coincident(int(pl.i[p]), int(pl.j[p]), None if pl.shift is None else pl.shift[p])

    def arrays(self, dtype, pad: bool = True):
        """(potential, R, species, i, j, shift, mask) as device arrays in ``dtype``."""
        cap = bucket(self.pairs.n_pairs) if pad else self.pairs.n_pairs
        i, j, shift, mask = padded(self.pairs, cap)
        return (
            cast_potential(self.potential, dtype),
            to_device(self.R, dtype),
            to_device(self.species),
            to_device(i),
            to_device(j),
            to_device(shift, dtype),
            to_device(mask),
        )

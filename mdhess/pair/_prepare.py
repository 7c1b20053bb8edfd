"""Input checking and preparation for the pair engine's public calls.

``Prepared`` validates a call's inputs on the host (clear errors naming the argument), resolves
the box into a cell and builds the pair list once; ``arrays`` hands the jitted kernels device
arrays padded to a bucketed capacity, so compiled functions are reused across similar sizes.
Value-dependent failures that come back from jitted code as data are raised here
(``raise_nonfinite``).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positions
from .._device import is_floating, to_device
from .._errors import InputError, NonFiniteError
from ._geometry import as_cell
from ._pairs import PairList, bucket, check_cell_images, padded
from ._planner import check_pair_list_memory
from ._potential import check_potential


def check_species(species, n_atoms: int, potential, *, call: str) -> np.ndarray:
    """(N,) int32 species indices inside the potential's tables.

    None is accepted only for a potential without species tables, or with (1, 1) tables (every
    atom species 0); a potential with (S, S) tables, S > 1, needs one index per atom. Integer-valued floats are accepted;
    fractions, bools, strings, complex and non-finite values are refused, and the range is
    checked before the cast to int32 (so 2**32 + 1 is not taken for 1).
    """
    S = potential.n_species
    if species is None:
        if S is not None and S > 1:  # (1, 1) tables leave nothing to choose
            raise InputError(
                f"{call}(species=None): the potential has (S, S) parameter tables with S={S} species, "
                f"so species=... must give one index 0..{S - 1} per atom ((n_atoms,) integers)"
            )
        return np.zeros(n_atoms, dtype=np.int32)
    try:
        s0 = np.asarray(species)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{call}(species=...) must be (n_atoms,) integers; got {species!r}"[:300]) from exc
    if s0.shape != (n_atoms,):
        raise InputError(f"{call}(species=...) expects shape ({n_atoms},) (one per atom); got {s0.shape}")
    hi = S if S is not None else np.iinfo(np.int32).max
    table = f"the potential's parameter table (species 0..{hi - 1})" if S is not None else "0..2**31-1"
    kind = s0.dtype.kind
    if kind == "O":  # Python ints beyond int64, mixed lists
        try:
            s0 = s0.astype(np.float64) if all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in s0) else s0
        except (TypeError, ValueError, OverflowError):
            pass
        kind = s0.dtype.kind
    if kind not in "iuf":
        found = {"b": "bool", "U": "string", "S": "bytes", "c": "complex", "O": "object"}.get(kind, str(s0.dtype))
        raise InputError(f"{call}(species=...) must be integers 0..S-1, one per atom; got {found} values {s0.tolist()[:8]}")
    if kind == "f":
        bad = ~np.isfinite(s0) | (np.mod(s0, 1) != 0)
        if bad.any():
            a = int(np.argmax(bad))
            raise InputError(f"{call}(species=...) must be integers 0..S-1; got {float(s0[a])!r} at atom {a}")
    bad = (s0 < 0) | (s0 >= hi)
    if bad.any():
        a = int(np.argmax(bad))
        v = s0[a]
        v = int(v) if kind in "iu" else float(v)
        raise InputError(f"{call}(species=...) value {v!r} at atom {a} is outside {table}")
    return s0.astype(np.int32)


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

    def __init__(self, potential, positions, box, species, call, memory_limit=None, plan=None):
        self.potential = check_potential(potential, call)
        self.call = call
        self.memory_limit = memory_limit
        self.plan = plan  # (n_atoms, n_pairs) -> MemoryPlan of the whole request, checked before the list
        self.cell = as_cell(box, call=call)
        # a periodic cell may hold one atom (it interacts with its own images)
        self.R = check_positions(positions, call=call, min_atoms=1 if self.cell is not None else 2)
        self.species = check_species(species, self.R.shape[0], potential, call=call)
        self.n_atoms = self.R.shape[0]
        self._check_resolution()
        # free space, no cutoff: every pair interacts; the dense layout never needs the list
        self.all_pairs = potential.all_pairs
        if self.all_pairs:
            if self.cell is not None:
                potential.pair_list(self.R, self.cell, self.species, call=call)  # raises: periodic needs a cutoff
            self._check_coincident_all()
        else:
            self._check_coincident_list()
            # the distances served that check; the list is kept without them (8 bytes a pair)
            self.__dict__["pairs"] = dataclasses.replace(self.pairs, distances=None)

    @functools.cached_property
    def pairs(self) -> PairList:
        rc = self.potential.max_cutoff
        if rc is not None and self.potential.bonds() is None:
            # refuse, before any list is built, a cell too skewed to scan and a list (or, with a
            # plan, a whole request) too large for the pair count the density and cutoff predict
            if self.cell is not None:
                check_cell_images(self.cell, rc, call=self.call)
            pair_cutoffs = getattr(self.potential, "pair_cutoffs", None)  # per species pair, if any
            check_pair_list_memory(
                self.n_atoms, self.cell, rc, call=self.call, limit=self.memory_limit, plan=self.plan,
                positions=self.R, species=self.species, pair_cutoffs=pair_cutoffs,
            )
        return self.potential.pair_list(self.R, self.cell, self.species, call=self.call)

    def _check_resolution(self):
        """Refuse coordinates so large that float64 cannot resolve the separations between atoms:
        its spacing near |R|max (|R|max x 2^-52) above 1e-6 of the interaction length (the cutoff,
        else the extent of the positions)."""
        big = float(np.abs(self.R).max()) if self.R.size else 0.0
        L = self.potential.max_cutoff
        if L is None or not np.isfinite(L):
            L = float(np.ptp(self.R, axis=0).max()) if self.n_atoms > 1 else 0.0
        spacing = big * np.finfo(np.float64).eps
        if L > 0 and spacing > 1e-6 * L:
            raise InputError(
                f"{self.call}(positions=...) are too large for float64 resolution: the largest coordinate "
                f"is {big:.6g}, where float64 resolves only about {spacing:.3g}, more than 1e-6 of the "
                f"interaction length {L:.6g}, so the separations between atoms are lost to rounding. "
                "Translate the positions near the origin (or wrap them into the cell)."
            )
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

    def wrapped(self, dtype, pairs: PairList | None = None):
        """(R, pairs) to cast to ``dtype``: as they are, except float32 in a periodic cell, where
        atoms outside the cell are moved into it IN FLOAT64 first (R' = R - n @ cell with
        n = floor(fractional coordinates)) and each pair's shift changed by (n_j - n_i) @ cell, so
        every displacement d = R'_j - R'_i + shift' is the same. float32 then carries small
        coordinates (unwrapped positions far from the cell lose the separations in float32).
        float64 is never touched, so its results stay bit-for-bit those of the positions given."""
        pairs = self.pairs if pairs is None else pairs
        if self.cell is None or np.dtype(dtype) != np.float32 or pairs.shift is None:
            return self.R, pairs
        n = np.floor(self.R @ np.linalg.inv(self.cell))
        if not n.any():
            return self.R, pairs
        R = self.R - n @ self.cell
        shift = pairs.shift + (n[pairs.j] - n[pairs.i]) @ self.cell
        return R, PairList(pairs.i, pairs.j, shift, pairs.n_atoms, pairs.distances)

    def arrays(self, dtype, pad: bool = True):
        """(potential, R, species, i, j, shift, mask) as device arrays in ``dtype``."""
        R, pairs = self.wrapped(dtype)
        cap = bucket(pairs.n_pairs) if pad else pairs.n_pairs
        i, j, shift, mask = padded(pairs, cap)
        return (
            cast_potential(self.potential, dtype),
            to_device(R, dtype),
            to_device(self.species),
            to_device(i),
            to_device(j),
            to_device(shift, dtype),
            to_device(mask),
        )

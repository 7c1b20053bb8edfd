"""Public entry points: energy, forces, hessian, hvp.

Each call validates its input on the host (clear errors naming the argument), builds the pair
list, pads it to a bucketed capacity so that compiled functions are reused across similar
sizes, and runs one jitted kernel. Value-dependent failures (non-finite blocks) come back from
the jitted code as data and are raised here.
"""

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._assemble import (
    MatrixFreeOperator,
    StoredBlockOperator,
    bsr_from_device_blocks,
    dense_all_pairs,
    dense_from_blocks,
    row_block_size,
    to_component_major,
)
from ._blocks import pair_blocks, pair_energies, pair_gradients
from .._device import is_floating, jit, to_device
from ._elastic import ElasticNetwork
from .._errors import InputError, NonFiniteError
from ._geometry import as_cell
from ._pairs import PairList, bucket, padded
from ._potential import PairPotential

FORMATS = ("dense", "bsr")
METHODS = ("pair", "ad")
LAYOUTS = ("interleaved", "component")


# -- input checks -------------------------------------------------------------------------------
def _check_positions(positions, *, call: str, name: str = "positions", min_atoms: int = 2) -> np.ndarray:
    try:
        R = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{call}({name}=...) must be a numeric (n_atoms, 3) array; got {type(positions).__name__}") from exc
    if R.ndim != 2 or R.shape[1] != 3:
        raise InputError(f"{call}({name}=...) expects shape (n_atoms, 3); got {R.shape}")
    if R.shape[0] < min_atoms:
        raise InputError(f"{call}({name}=...) needs at least {min_atoms} atom(s); got {R.shape[0]}")
    bad = ~np.all(np.isfinite(R), axis=1)
    if bad.any():
        a = int(np.argmax(bad))
        raise InputError(f"{call}({name}=...) has non-finite coordinates at atom {a}: {R[a].tolist()}")
    return R


def _check_species(species, n_atoms: int, potential, *, call: str) -> np.ndarray:
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


def _check_potential(potential, call: str):
    if not isinstance(potential, (PairPotential, ElasticNetwork)):
        raise InputError(
            f"{call}(potential=...) must be an mdhess potential (e.g. mdhess.lennard_jones(...)); "
            f"got {type(potential).__name__}"
        )


class _Prepared:
    """Validated inputs and the host-side pair list of one call."""

    def __init__(self, potential, positions, box, species, call):
        _check_potential(potential, call)
        self.potential = potential
        self.call = call
        self.cell = as_cell(box, call=call)
        # a periodic cell may hold one atom (it interacts with its own images)
        self.R = _check_positions(positions, call=call, min_atoms=1 if self.cell is not None else 2)
        self.species = _check_species(species, self.R.shape[0], potential, call=call)
        self.n_atoms = self.R.shape[0]
        # free space, no cutoff: every pair interacts; the dense layout never needs the list
        self.all_pairs = isinstance(potential, PairPotential) and potential.cutoff is None
        if self.all_pairs:
            if self.cell is not None:
                potential.pair_list(self.R, self.cell, self.species, call=call)  # raises: periodic needs a cutoff
            self._check_coincident_all()
        else:
            self._check_coincident_list()

    @functools.cached_property
    def pairs(self) -> PairList:
        return self.potential.pair_list(self.R, self.cell, self.species, call=self.call)

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
        pot = _cast_potential(self.potential, dtype)
        return (
            pot,
            to_device(self.R, dtype),
            to_device(self.species),
            to_device(i),
            to_device(j),
            to_device(shift, dtype),
            to_device(mask),
        )


def _cast_potential(potential, dtype):
    """The potential's floating-point leaves in ``dtype`` (integer leaves such as bond indices kept)."""
    return jax.tree.map(
        lambda x: to_device(x, dtype) if is_floating(x) else x, potential
    )


def _resolve_dtype(dtype, call: str):
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


# -- jitted kernels -----------------------------------------------------------------------------
def _pair_geometry(potential, R, species, i, j, shift):
    d = R[j] - R[i] + shift
    pp = potential.pair_params(species[i], species[j], jnp.arange(i.shape[0]))
    return d, pp


@partial(jit, static_argnames=("n_atoms",))
def _energy_forces(potential, R, species, i, j, shift, mask, n_atoms):
    d, pp = _pair_geometry(potential, R, species, i, j, shift)
    e, g = pair_gradients(potential.phi_eff, d, pp, mask)
    F = jax.ops.segment_sum(g, i, n_atoms) - jax.ops.segment_sum(g, j, n_atoms)
    return jnp.sum(e), F


@jit
def _blocks(potential, R, species, i, j, shift, mask):
    d, pp = _pair_geometry(potential, R, species, i, j, shift)
    K = pair_blocks(potential.phi_eff, d, pp, mask)
    return K, jnp.all(jnp.isfinite(K))


def _plain_energy(potential, R, species, i, j, shift):
    d, pp = _pair_geometry(potential, R, species, i, j, shift)
    return jnp.sum(pair_energies(potential.phi_eff, d, pp))


@jit
def _hessian_ad(potential, R, species, i, j, shift):
    n = R.shape[0]
    return jax.hessian(_plain_energy, argnums=1)(potential, R, species, i, j, shift).reshape(3 * n, 3 * n)


def _raise_nonfinite(call: str, what: str):
    raise NonFiniteError(
        f"{call}: non-finite {what} (NaN or inf); check for overlapping atoms or parameters that make "
        "the potential singular at these distances"
    )


# -- public API ---------------------------------------------------------------------------------
def energy(potential, positions, *, box=None, species=None) -> float:
    """Total pair energy, each unordered pair (or atom-image pair) counted once.

    Args:
        potential: an mdhess potential.
        positions: (N, 3) in the potential's length units.
        box: None (free space), scalar or (3,) edge lengths, or (3, 3) cell (rows are cell vectors).
        species: (N,) integers 0..S-1 indexing the potential's tables; None means all species 0.

    Returns:
        Energy in the potential's energy units (Python float).
    """
    p = _Prepared(potential, positions, box, species, "energy")
    E, _ = _energy_forces(*p.arrays(_resolve_dtype(None, "energy")), n_atoms=p.n_atoms)
    E = float(E)
    if not np.isfinite(E):
        _raise_nonfinite("energy", "energy")
    return E


def forces(potential, positions, *, box=None, species=None):
    """Forces -dE/dR, (N, 3) JAX array in energy / length units. Arguments as for ``energy``."""
    p = _Prepared(potential, positions, box, species, "forces")
    _, F = _energy_forces(*p.arrays(_resolve_dtype(None, "forces")), n_atoms=p.n_atoms)
    if not bool(jnp.all(jnp.isfinite(F))):
        _raise_nonfinite("forces", "forces")
    return F


def hessian(
    potential,
    positions,
    *,
    box=None,
    species=None,
    format="dense",
    method="pair",
    dtype=None,
    memory_limit=None,
    layout="interleaved",
):
    """Hessian d2E/dR2 of a pair energy, (3N, 3N), row/column index 3*i + a.

    Args:
        potential, positions, box, species: as for ``energy``.
        format: "dense" -> (3N, 3N) JAX array; "bsr" -> scipy.sparse.bsr_matrix, blocksize (3, 3),
            canonical (sorted, duplicate image blocks summed).
        method: "pair" (per-pair 3x3 blocks from scalar derivatives) or "ad" (jax.hessian of the
            plain energy: the validation reference; memory grows like N^2 x 3N, small N only).
        dtype: None (float64), "float64" or "float32".
        memory_limit: bytes (or a string such as "8G") the request may use; default
            $MDHESS_MEMORY_LIMIT or the memory free on the device. Requests estimated above it are
            refused before anything is allocated.
        layout: dense only. "interleaved" (default): row 3*i + a. "component": row a*N + i, a
            symmetric permutation of the same matrix (same eigenvalues; eigenvector entries
            permuted the same way) whose rows are written with unit stride over atoms, faster to
            build for all-pair systems.

    Returns:
        The Hessian in energy / length^2 units.

    Raises:
        InputError: bad positions, box, species, format, method or dtype (the message names it).
        MemoryPlanError: the estimated memory exceeds the limit (the message gives the estimate).
        NonFiniteError: the blocks came out NaN or infinite.
    """
    from . import _planner

    if format not in FORMATS:
        raise InputError(f"hessian(format=...) must be one of {FORMATS}; got {format!r}")
    if method not in METHODS:
        raise InputError(f"hessian(method=...) must be one of {METHODS}; got {method!r}")
    if layout not in LAYOUTS:
        raise InputError(f"hessian(layout=...) must be one of {LAYOUTS}; got {layout!r}")
    if layout != "interleaved" and format != "dense":
        raise InputError(f"hessian(layout={layout!r}) applies to format='dense' only; got format={format!r}")
    component = layout == "component"
    dt = _resolve_dtype(dtype, "hessian")
    p = _Prepared(potential, positions, box, species, "hessian")
    suggestion = (
        "Try format='bsr' (stores only interacting blocks) or mdhess.hvp(...) (products H @ v without storing H)."
    )
    if method == "ad":
        args = p.arrays(dt, pad=False)[:-1]
        compiled = _hessian_ad.lower(*args).compile()
        _planner.check(_planner.from_compiled(f"hessian(method='ad', N={p.n_atoms})", compiled), memory_limit, suggestion="Use method='pair'.")
        H = compiled(*args)
        if not bool(jnp.all(jnp.isfinite(H))):
            _raise_nonfinite("hessian", "Hessian entries")
        if format == "bsr":
            import scipy.sparse

            return scipy.sparse.bsr_matrix(np.asarray(H), blocksize=(3, 3))
        return to_component_major(H) if component else H
    n_pairs = p.n_atoms * (p.n_atoms - 1) // 2 if p.all_pairs else p.pairs.n_pairs
    plan = _planner.estimate_memory(p.n_atoms, n_pairs, format=format, dtype=dt, all_pairs=p.all_pairs)
    _planner.check(plan, memory_limit, suggestion=suggestion)
    if format == "dense" and p.all_pairs:
        pot = _cast_potential(p.potential, dt)
        H = dense_all_pairs(
            pot, to_device(p.R, dt), to_device(p.species), block=row_block_size(p.n_atoms), component_major=component
        )
        if not bool(jnp.all(jnp.isfinite(jnp.diagonal(H)))):  # a non-finite block reaches its diagonal block
            _raise_nonfinite("hessian", "pair blocks")
        return H
    pot, R, s, i, j, shift, mask = p.arrays(dt)
    K, ok = _blocks(pot, R, s, i, j, shift, mask)
    if format == "dense":
        if not bool(ok):
            _raise_nonfinite("hessian", "pair blocks")
        H = dense_from_blocks(K, i, j, p.n_atoms)
        return to_component_major(H) if component else H
    M = bsr_from_device_blocks(K, i, j, p.pairs.i, p.pairs.j, p.n_atoms)
    if not bool(ok):
        _raise_nonfinite("hessian", "pair blocks")
    return M


def hvp(potential, positions, *, box=None, species=None, store_blocks=True, dtype=None):
    """Hessian-vector product operator, H @ v for v of shape (3N,) or (3N, k).

    Args:
        potential, positions, box, species: as for ``energy``.
        store_blocks: True (default) computes the pair blocks once and stores them (9 floats per
            pair; cheap repeated products for iterative eigensolvers); False recomputes them on
            every product and never stores H or the blocks (memory O(N + pairs)).
        dtype: None (float64), "float64" or "float32".

    Returns:
        A ``HessianOperator``: ``op @ v``, ``op.shape``, ``op.as_linear_operator()`` (scipy),
        ``op.as_matrix()``.
    """
    dt = _resolve_dtype(dtype, "hvp")
    p = _Prepared(potential, positions, box, species, "hvp")
    args = p.arrays(dt)
    if store_blocks:
        K, ok = _blocks(*args)
        if not bool(ok):
            _raise_nonfinite("hvp", "pair blocks")
        return StoredBlockOperator(K, args[3], args[4], p.n_atoms)
    return MatrixFreeOperator(*args, n_atoms=p.n_atoms)

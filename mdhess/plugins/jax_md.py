"""jax-md integration: jax-md spaces and neighbour lists driving mdhess, mdhess energies in jax-md.

- ``space(box)``: jax-md ``(displacement_fn, shift_fn)`` for an mdhess box (rows = cell vectors).
- ``neighbor_list(potential, box)``: a jax-md ``NeighborListFns`` whose cutoff is the potential's
  (largest) cutoff, in any of jax-md's formats (Dense, Sparse, OrderedSparse).
- ``hessian(potential, positions, neighbor)``: the mdhess Hessian (dense or BSR) assembled from
  the pairs of a jax-md ``NeighborList`` through mdhess's own block and assembly functions.
- ``hvp(potential, positions, neighbor)``: the matching stored-block H.v operator.
- ``energy_fn``, ``forces_fn``, ``hessian_of``: re-exported from mdhess (pure, jit-able; pass
  ``neighbor=nbrs`` to use a jax-md list), so ``minimize.fire_descent(energy_fn(pot, box=L), shift)``
  and ``simulate.nve(...)`` run on mdhess energies.

jax-md lists use the minimum-image convention: the cutoff (plus ``dr_threshold``) must not exceed
half the shortest perpendicular cell width (checked). ``mdhess.hessian`` has no such limit.

jax-md's own code mixes float32 boxes with float64 positions: under JAX's "strict" dtype
promotion its neighbour lists fail inside jax-md; run them under the default ("standard") mode.

jax-md's sparse neighbour lists scatter int64 indices into int32 arrays under JAX's x64 mode
(which mdhess turns on); JAX answers with a FutureWarning. The lists made here, and the calls
made on them here, filter exactly that warning (``quiet_index_dtype_warning``).
"""

import dataclasses
import warnings
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positions
from .._device import jit
from .._errors import InputError
from ..pair._autodiff import energy_fn as energy_fn
from ..pair._autodiff import forces_fn as forces_fn
from ..pair._autodiff import hessian_of as hessian_of
from ..pair._compute import blocks_and_check
from ..pair._geometry import as_cell, is_orthorhombic
from ..pair._layouts import HESSIAN_FORMATS, bsr_from_blocks, dense_from_blocks, diagonal_blocks
from ..pair._operators import StoredBlockOperator
from ..pair._pairs import NEIGHBOR_LIST_FORMATS, check_periodic_cutoff, neighbor_list_half_pairs
from ..pair._potential import PairPotential, check_potential, inside_cutoff
from ..pair._prepare import cast_potential, check_species, raise_nonfinite, resolve_dtype


def _jax_md():
    """Import jax_md (its import-time code needs "standard" dtype promotion)."""
    with jax.numpy_dtype_promotion("standard"):
        import jax_md
        import jax_md.partition
        import jax_md.space
    return jax_md


# Upstream cause: jax_md/partition.py (0.2.x), prune_neighbor_list_sparse, builds its candidate
# and sender indices with jnp.arange(N) -- int64 when jax_enable_x64 is on, as mdhess sets it --
# and scatters them into int32 arrays (out_idx = N * jnp.ones(..., i32)); JAX warns "scatter inputs
# have incompatible types: cannot safely cast value from dtype=int64 to dtype=int32" at each
# trace. No argument of jax-md sets that index dtype (the positions' dtype does not reach it),
# so it cannot be avoided from outside: this one message is filtered around jax-md's list calls,
# nothing else.
JAX_MD_INDEX_WARNING = (
    r"scatter inputs have incompatible types: cannot safely cast value from dtype=int64 to dtype=int32"
)


@contextmanager
def quiet_index_dtype_warning():
    """Filter jax-md's int64 -> int32 index scatter FutureWarning (only that one) inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JAX_MD_INDEX_WARNING, category=FutureWarning)
        yield


def _quiet(fn):
    """``fn`` called with jax-md's index-dtype warning filtered."""

    def quiet(*args, **kwargs):
        with quiet_index_dtype_warning():
            return fn(*args, **kwargs)

    quiet.mdhess_quiet = True
    quiet.__doc__ = fn.__doc__
    return quiet


def _quiet_fns(fns):
    """jax-md ``NeighborListFns`` whose allocate / update, and the ``update`` of the lists they
    return, run with the index-dtype warning filtered. One wrapper per jax-md builder, so that a
    list's static ``update_fn`` stays the same object across updates (no retracing)."""
    partition = _jax_md().partition
    wrapped = {}

    def quiet_list(nbrs):
        inner = nbrs.update_fn
        if getattr(inner, "mdhess_quiet", False):
            return nbrs
        if id(inner) not in wrapped:
            wrapped[id(inner)] = (inner, _quiet(inner))
        return dataclasses.replace(nbrs, update_fn=wrapped[id(inner)][1])

    def allocate(position, extra_capacity: int = 0, **kwargs):
        with quiet_index_dtype_warning():
            return quiet_list(fns.allocate(position, extra_capacity=extra_capacity, **kwargs))

    def update(position, neighbors, **kwargs):
        with quiet_index_dtype_warning():
            return quiet_list(fns.update(position, neighbors, **kwargs))

    return partition.NeighborListFns(allocate, update)


def _format(fmt, call: str):
    partition = _jax_md().partition

    if isinstance(fmt, partition.NeighborListFormat):
        return fmt
    if isinstance(fmt, str) and fmt in NEIGHBOR_LIST_FORMATS:
        return getattr(partition.NeighborListFormat, fmt)
    raise InputError(
        f"{call}(format=...) must be one of {NEIGHBOR_LIST_FORMATS} or a jax_md.partition.NeighborListFormat; got {fmt!r}"
    )


def space(box=None):
    """jax-md ``(displacement_fn, shift_fn)`` for an mdhess box.

    Args:
        box: None (free space), scalar or (3,) edge lengths, or a (3, 3) cell whose rows are the
            cell vectors (ASE's convention; jax-md's general box is its transpose).

    Returns:
        ``jax_md.space.free()``, ``space.periodic(edges)`` or
        ``space.periodic_general(cell.T, fractional_coordinates=False)``.
    """
    jspace = _jax_md().space
    cell = as_cell(box, call="mdhess.plugins.jax_md.space")
    if cell is None:
        return jspace.free()
    if is_orthorhombic(cell):
        return jspace.periodic(jnp.asarray(np.diag(cell)))
    return jspace.periodic_general(jnp.asarray(cell.T), fractional_coordinates=False)


def _checked_potential(potential, call: str) -> PairPotential:
    check_potential(potential, call)
    if potential.max_cutoff is None or potential.bonds() is not None:
        what = type(potential).__name__ if potential.bonds() is not None else "a potential without a cutoff"
        raise InputError(
            f"{call}(potential=...) needs a PairPotential with a cutoff (a neighbour list needs a "
            f"radius); got {what}"
        )
    return potential


def neighbor_list(
    potential, box=None, *, dr_threshold=0.0, capacity_multiplier=1.25, format="Sparse", **kwargs
):
    """A jax-md neighbour-list builder whose radius is the potential's cutoff.

    Args:
        potential: an mdhess ``PairPotential`` with a cutoff (the largest entry of a species
            table is used; pairs beyond their own cutoff contribute exactly zero).
        box: as for ``space``. Free space uses jax-md's O(N^2) candidate search (no cell list,
            which would need a bounding box); triclinic cells too.
        dr_threshold: jax-md's skin: the list is rebuilt when an atom moves more than half of it.
        capacity_multiplier: jax-md's spare capacity factor.
        format: "Dense", "Sparse" (default) or "OrderedSparse" (or the jax-md enum).
        **kwargs: passed to ``jax_md.partition.neighbor_list``.

    Returns:
        ``jax_md.partition.NeighborListFns`` (``.allocate(R)``, ``.update(R, nbrs)``; the
        lists' own ``.update``), with jax-md's index-dtype FutureWarning filtered (see
        ``JAX_MD_INDEX_WARNING``).

    Raises:
        InputError: no cutoff, or cutoff + dr_threshold above half the shortest cell width.
    """
    partition = _jax_md().partition
    call = "mdhess.plugins.jax_md.neighbor_list"
    pot = _checked_potential(potential, call)
    fmt = _format(format, call)
    cell = as_cell(box, call=call)
    rc = pot.max_cutoff
    if not np.isfinite(dr_threshold) or dr_threshold < 0:
        raise InputError(f"{call}(dr_threshold=...) must be >= 0; got {dr_threshold!r}")
    disp, _ = space(box)
    if cell is None:
        kwargs.setdefault("disable_cell_list", True)
        jbox = 1.0  # unused without a cell list
    else:
        check_periodic_cutoff(cell, rc + dr_threshold, call=call)
        if is_orthorhombic(cell):
            jbox = jnp.asarray(np.diag(cell))
        else:
            kwargs.setdefault("disable_cell_list", True)
            jbox = jnp.asarray(cell.T)
    with jax.numpy_dtype_promotion("standard"):  # jax-md probes the displacement with float32 shapes
        fns = partition.neighbor_list(
            disp,
            jbox,
            rc,
            dr_threshold=dr_threshold,
            capacity_multiplier=capacity_multiplier,
            format=fmt,
            **kwargs,
        )
    return _quiet_fns(fns)


def half_pairs(neighbor, n_atoms: int):
    """(i, j, mask) with each unordered pair of a jax-md list once (i < j); traceable under jit.

    Dense lists (N, M) and Sparse lists (2, C) hold every pair from both ends, OrderedSparse once;
    padding entries (index N) and the second copy are masked (mask False, i = j = 0).
    """
    return neighbor_list_half_pairs(neighbor, n_atoms, call="mdhess.plugins.jax_md.half_pairs")


@jit
def _minimum_image_shift(R, i, j, cell, inv_cell):
    """shift = -round(s) @ cell with s the fractional pair displacement: d = r_j - r_i + shift."""
    s = (R[j] - R[i]) @ inv_cell
    return -jnp.round(s) @ cell


def _current_list(neighbor, R, call: str):
    """The list updated to R (a no-op within jax-md's skin); reallocated if it overflowed."""
    partition = _jax_md().partition
    if not isinstance(neighbor, partition.NeighborList):
        raise InputError(
            f"{call}(neighbor=...) must be a jax_md.partition.NeighborList; got {type(neighbor).__name__}"
        )
    n = R.shape[0]
    if neighbor.reference_position.shape[0] != n:
        raise InputError(
            f"{call}(neighbor=...) was built for {neighbor.reference_position.shape[0]} atoms; "
            f"positions have {n}"
        )
    # jax-md mixes float32 boxes and float64 positions; its index-dtype warning: see JAX_MD_INDEX_WARNING
    with jax.numpy_dtype_promotion("standard"), quiet_index_dtype_warning():
        nbrs = neighbor.update(jnp.asarray(R, neighbor.reference_position.dtype))
        if bool(nbrs.did_buffer_overflow):
            # the list's own builder, called without a previous list, allocates a larger one
            nbrs = neighbor.update_fn(jnp.asarray(R, neighbor.reference_position.dtype), None)
    if bool(nbrs.did_buffer_overflow):
        raise InputError(f"{call}(neighbor=...) overflowed its capacity and could not be reallocated")
    if bool(nbrs.cell_size_too_small) or bool(nbrs.malformed_box):
        raise InputError(f"{call}(neighbor=...) reports a jax-md error: {nbrs.error}")
    return nbrs


def _prepare(potential, positions, neighbor, box, species, dtype, call):
    pot = _checked_potential(potential, call)
    R = check_positions(positions, call=call, min_atoms=2)
    s = check_species(species, R.shape[0], pot, call=call)
    cell = as_cell(box, call=call)
    if cell is not None:
        check_periodic_cutoff(cell, pot.max_cutoff, call=call)
    dt = resolve_dtype(dtype, call)
    nbrs = _current_list(neighbor, R, call)
    n = R.shape[0]
    i, j, mask = half_pairs(nbrs, n)
    Rj = jnp.asarray(R, dt)
    if cell is None:
        shift = jnp.zeros((i.shape[0], 3), dt)
    else:
        shift = _minimum_image_shift(Rj, i, j, jnp.asarray(cell, dt), jnp.asarray(np.linalg.inv(cell), dt))
    args = (
        cast_potential(pot, dt),
        Rj,
        jnp.asarray(s),
        i.astype(jnp.int32),
        j.astype(jnp.int32),
        shift,
        mask,
    )
    return args, n


def hessian(potential, positions, neighbor, *, box=None, species=None, format="dense", dtype=None):
    """The mdhess Hessian over the pairs of a jax-md neighbour list.

    The list's pairs go through the same per-pair blocks and layouts as ``mdhess.hessian``; pairs
    in the list's skin (beyond the potential's cutoff) contribute exactly zero.

    Args:
        potential: an mdhess ``PairPotential`` with a cutoff.
        positions: (N, 3), length units.
        neighbor: a ``jax_md.partition.NeighborList`` (Dense, Sparse or OrderedSparse) built with
            a radius >= the potential's cutoff (``neighbor_list(potential, box)`` does that). It is
            updated to ``positions`` first and reallocated if it overflows; the caller's list is
            not modified.
        box, species: as for ``mdhess.hessian`` (periodic boxes: minimum image).
        format: "dense" -> (3N, 3N) JAX array; "bsr" -> canonical scipy BSR (skin pairs dropped).
        dtype: None (float64), "float64" or "float32".

    Returns:
        The Hessian, energy / length^2.

    Raises:
        InputError: bad arguments, a cutoff above half the cell width, a list for another N.
        NonFiniteError: non-finite blocks.
    """
    call = "mdhess.plugins.jax_md.hessian"
    if format not in HESSIAN_FORMATS:
        raise InputError(f"{call}(format=...) must be 'dense' or 'bsr'; got {format!r}")
    args, n = _prepare(potential, positions, neighbor, box, species, dtype, call)
    K, ok = blocks_and_check(*args)
    if not bool(ok):
        raise_nonfinite(call, "pair blocks")
    i, j, mask = args[3], args[4], args[6]
    if format == "dense":
        return dense_from_blocks(K, i, j, n)
    pot, R, s, shift = args[0], args[1], args[2], args[5]
    keep = np.asarray(mask)
    d = np.asarray(R[j] - R[i] + shift)[keep]
    si, sj = np.asarray(s)[np.asarray(i)[keep]], np.asarray(s)[np.asarray(j)[keep]]
    inside = inside_cutoff(np.linalg.norm(d, axis=1), pot.pair_cutoffs(si, sj))  # as mdhess's own lists
    Kk = np.asarray(K)[keep][inside]
    ik, jk = np.asarray(i)[keep][inside], np.asarray(j)[keep][inside]
    return bsr_from_blocks(Kk, np.asarray(diagonal_blocks(K, i, j, n)), ik, jk, n)


def hvp(potential, positions, neighbor, *, box=None, species=None, dtype=None):
    """Stored-block H.v operator over a jax-md list (``op @ v``, ``op.as_linear_operator()``).

    Arguments as for ``hessian``; returns ``mdhess.StoredBlockOperator``."""
    call = "mdhess.plugins.jax_md.hvp"
    args, n = _prepare(potential, positions, neighbor, box, species, dtype, call)
    K, ok = blocks_and_check(*args)
    if not bool(ok):
        raise_nonfinite(call, "pair blocks")
    return StoredBlockOperator(K, args[3], args[4], n)

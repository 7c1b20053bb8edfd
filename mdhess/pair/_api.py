"""Public entry points of the pair engine: energy, forces, hessian, hvp.

Each call validates its input and builds the pair list (``_prepare.Prepared``), runs one jitted
kernel (``_compute``) and lays the blocks out (``_layouts``, ``_operators``). Value-dependent
failures (non-finite blocks) come back from the jitted code as data and are raised here.
"""

import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from .._device import to_device
from .._errors import InputError
from . import _planner
from ._assembly import bsr_hessian
from ._compute import blocks_and_check, energy_and_forces, hessian_ad
from ._layouts import (
    DENSE_LAYOUTS,
    HESSIAN_FORMATS,
    dense_all_pairs,
    dense_from_blocks,
    row_block_size,
    to_component_major,
)
from ._operators import MatrixFreeOperator, StoredBlockOperator
from ._prepare import Prepared, cast_potential, raise_nonfinite, resolve_dtype

HESSIAN_METHODS = ("pair", "ad")
"""``hessian(method=...)``: per-pair blocks, or jax.hessian of the plain energy (the reference)."""


# -- public API ---------------------------------------------------------------------------------
def energy(potential, positions, *, box=None, species=None) -> float:
    """Total pair energy, each unordered pair (or atom-image pair) counted once.

    Args:
        potential: an mdhess potential.
        positions: (N, 3) in the potential's length units.
        box: None (free space), scalar or (3,) edge lengths, or (3, 3) cell (rows are cell vectors).
        species: (N,) integers 0..S-1 indexing the potential's tables; may be None only for a
            potential without species tables (every atom species 0).

    Returns:
        Energy in the potential's energy units (Python float).
    """
    p = Prepared(potential, positions, box, species, "energy")
    E, _ = energy_and_forces(*p.arrays(resolve_dtype(None, "energy")), n_atoms=p.n_atoms)
    E = float(E)
    if not np.isfinite(E):
        raise_nonfinite("energy", "energy")
    return E


def forces(potential, positions, *, box=None, species=None):
    """Forces -dE/dR, (N, 3) JAX array in energy / length units. Arguments as for ``energy``."""
    p = Prepared(potential, positions, box, species, "forces")
    _, F = energy_and_forces(*p.arrays(resolve_dtype(None, "forces")), n_atoms=p.n_atoms)
    if not bool(jnp.all(jnp.isfinite(F))):
        raise_nonfinite("forces", "forces")
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
    devices=None,
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
        devices: None, or (format="bsr" only) a list of JAX devices or a 1-D
            ``jax.sharding.Mesh``: the block rows are split over them (atoms in a space-filling
            curve order) and a ``ShardedHessianOperator`` is returned, each device holding its
            rows' blocks; its ``to_bsr()`` gathers the scipy BSR (docs/scaling.md).

    Returns:
        The Hessian in energy / length^2 units.

    Raises:
        InputError: bad positions, box, species, format, method or dtype (the message names it).
        MemoryPlanError: the estimated memory exceeds the limit (the message gives the estimate).
        NonFiniteError: the blocks came out NaN or infinite.
    """
    check_choice(format, HESSIAN_FORMATS, call="hessian", name="format")
    check_choice(method, HESSIAN_METHODS, call="hessian", name="method")
    check_choice(layout, DENSE_LAYOUTS, call="hessian", name="layout")
    if devices is not None and (format != "bsr" or method != "pair"):
        raise InputError(
            f"hessian(devices=...) needs format='bsr' and method='pair'; got format={format!r}, method={method!r}"
        )
    if layout != "interleaved" and format != "dense":
        raise InputError(f"hessian(layout={layout!r}) applies to format='dense' only; got format={format!r}")
    component = layout == "component"
    dt = resolve_dtype(dtype, "hessian")
    if memory_limit is not None:
        _planner.memory_limit(memory_limit)  # a bad limit is refused before any work
    if devices is not None:
        return _sharded(potential, positions, box, species, dt, devices, store_blocks=True, call="hessian",
                        memory_limit=memory_limit)  # fmt: skip
    if method == "pair":
        return _prepare_pair(potential, positions, box, species, format, dt, memory_limit).compute(layout)
    p = Prepared(potential, positions, box, species, "hessian", memory_limit=memory_limit)
    args = p.arrays(dt, pad=False)[:-1]
    compiled = hessian_ad.lower(*args).compile()
    _planner.check(_planner.from_compiled(f"hessian(method='ad', N={p.n_atoms})", compiled), memory_limit, suggestion="Use method='pair'.")
    H = compiled(*args)
    if not bool(jnp.all(jnp.isfinite(H))):
        raise_nonfinite("hessian", "Hessian entries")
    if format == "bsr":
        import scipy.sparse

        return scipy.sparse.bsr_matrix(np.asarray(H), blocksize=(3, 3))
    return to_component_major(H) if component else H


PAIR_SUGGESTION = (
    "Try format='bsr' (stores only interacting blocks) or mdhess.hvp(...) (products H @ v without storing H)."
)


class PreparedHessian:
    """A ``hessian(method="pair")`` request on one device with its host work done: arguments
    checked, the pair list built and the whole request planned against the memory limit (made by
    ``prepare_hessian``). ``compute()`` runs the kernels and lays the blocks out.

    The two halves may run on different threads: the preparation is numpy and the compiled
    neighbour list only (no JAX), so a caller with many small frames (the CLI) prepares the next
    frame while this one's blocks are computed.
    """

    def __init__(self, prepared: Prepared, format: str, dtype):
        self.prepared, self.format, self.dtype = prepared, format, dtype

    def compute(self, layout: str = "interleaved"):
        """The Hessian, as ``hessian(..., layout=layout)`` returns it.

        Raises:
            NonFiniteError: the blocks came out NaN or infinite.
        """
        check_choice(layout, DENSE_LAYOUTS, call="hessian", name="layout")
        p, dt = self.prepared, self.dtype
        component = layout == "component"
        if self.format == "dense" and p.all_pairs:
            pot = cast_potential(p.potential, dt)
            H = dense_all_pairs(
                pot, to_device(p.R, dt), to_device(p.species), block=row_block_size(p.n_atoms), component_major=component
            )
            if not bool(jnp.all(jnp.isfinite(jnp.diagonal(H)))):  # a non-finite block reaches its diagonal block
                raise_nonfinite("hessian", "pair blocks")
            return H
        if self.format == "bsr":
            return bsr_hessian(p, dt)  # streamed into the output, chunk by chunk (_assembly)
        pot, R, s, i, j, shift, mask = p.arrays(dt)
        K, ok = blocks_and_check(pot, R, s, i, j, shift, mask)
        if not bool(ok):
            raise_nonfinite("hessian", "pair blocks")
        H = dense_from_blocks(K, i, j, p.n_atoms)
        return to_component_major(H) if component else H


def prepare_hessian(potential, positions, *, box=None, species=None, format="dense", dtype=None, memory_limit=None):
    """The host half of ``hessian(..., method="pair")`` (one device): a ``PreparedHessian``
    whose ``compute()`` gives what ``hessian`` returns. Arguments and errors as for
    ``hessian`` (the memory plan is checked here, before and after the pair list).
    """
    check_choice(format, HESSIAN_FORMATS, call="hessian", name="format")
    dt = resolve_dtype(dtype, "hessian")
    if memory_limit is not None:
        _planner.memory_limit(memory_limit)
    return _prepare_pair(potential, positions, box, species, format, dt, memory_limit)


def _prepare_pair(potential, positions, box, species, format, dt, memory_limit) -> PreparedHessian:
    # the whole request is planned from the pair count estimated from the density and the
    # cutoff, and refused before any list is built (then again, exactly, after)
    def whole(n, n_pairs):
        return _planner.estimate_memory(n, n_pairs, format=format, dtype=dt)

    p = Prepared(potential, positions, box, species, "hessian", memory_limit=memory_limit, plan=whole)
    plan = _planner.estimate_memory(p.n_atoms, p.n_pairs, format=format, dtype=dt, all_pairs=p.all_pairs)
    _planner.check(plan, memory_limit, suggestion=PAIR_SUGGESTION)
    return PreparedHessian(p, format, dt)


def _sharded(potential, positions, box, species, dt, devices, *, store_blocks: bool, call: str, memory_limit=None):
    """The ``ShardedHessianOperator`` of ``hessian(..., devices=...)`` / ``hvp(..., devices=...)``:
    bad devices refused before any work, the memory plan checked from the estimated and then the
    exact pair count, and, across processes, the outcome and input agreed before any collective."""
    from ._sharded import (
        SHARDED_SUGGESTION,
        agree_across_processes,
        input_fingerprint,
        resolve_mesh,
        sharded_operator,
        sharded_plan,
    )

    mesh, _ = resolve_mesh(devices, call=call)
    plan = sharded_plan(mesh, dt, store_blocks=store_blocks, call=call)

    def prepare():
        p = Prepared(potential, positions, box, species, call, memory_limit=memory_limit, plan=plan)
        _planner.check(plan(p.n_atoms, p.n_pairs), memory_limit, suggestion=SHARDED_SUGGESTION)  # exact pair count
        return p

    p = agree_across_processes(mesh, call, prepare, lambda p: input_fingerprint(p, str(dt), store_blocks))
    return sharded_operator(p, dt, devices, store_blocks=store_blocks, call=call)


def hvp(potential, positions, *, box=None, species=None, store_blocks=True, dtype=None, devices=None):
    """Hessian-vector product operator, H @ v for v of shape (3N,) or (3N, k).

    Args:
        potential, positions, box, species: as for ``energy``.
        store_blocks: True (default) computes the pair blocks once and stores them (9 floats per
            pair; cheap repeated products for iterative eigensolvers); False recomputes them on
            every product and never stores H or the blocks (memory O(N + pairs)).
        dtype: None (float64), "float64" or "float32".
        devices: None (one device), or a list of JAX devices or a 1-D ``jax.sharding.Mesh``:
            the block rows are split over them (docs/scaling.md, "Several devices") and a
            ``ShardedHessianOperator`` is returned (same interface, original atom order).

    Returns:
        A ``HessianOperator``: ``op @ v``, ``op.shape``, ``op.as_linear_operator()`` (scipy),
        ``op.as_matrix()``.
    """
    if not isinstance(store_blocks, (bool, np.bool_)):
        raise InputError(f"hvp(store_blocks=...) must be True or False; got {store_blocks!r}")
    dt = resolve_dtype(dtype, "hvp")
    if devices is not None:
        return _sharded(potential, positions, box, species, dt, devices, store_blocks=bool(store_blocks), call="hvp")
    p = Prepared(potential, positions, box, species, "hvp")
    args = p.arrays(dt)
    if store_blocks:
        K, ok = blocks_and_check(*args)
        if not bool(ok):
            raise_nonfinite("hvp", "pair blocks")
        return StoredBlockOperator(K, args[3], args[4], p.n_atoms)
    return MatrixFreeOperator(*args, n_atoms=p.n_atoms)

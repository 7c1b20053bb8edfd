"""Composable energies (custom_jvp) and memory-bounded Hessians of any JAX energy.

``energy_fn`` returns a pure, jit-able E(R) whose derivatives route through the per-pair kernels:

    jax.grad(E)        -> the per-pair forces (custom_jvp of E: dE = -F . dR)
    jvp of jax.grad(E) -> the per-pair H.v    (custom_jvp of F: dF = -H dR, blocks never stored)

so ``jax.grad``, ``jax.jvp``, ``jax.hessian``, ``jax.vmap`` and jax-md minimizers compose with it
without differentiating through (N, N, 3) displacement tangents. Each tangent costs one pass over
the pairs (O(p) memory); ``jax.hessian`` pushes 3N tangents at once, so for whole Hessians prefer
``mdhess.hessian`` (one pass) or ``hessian_of`` (batched, bounded memory).

``hessian_of`` works for ANY JAX energy (many-body potentials included): it linearizes grad(E)
once and pushes batches of basis vectors through the linear map, so memory is bounded by the batch.
"""

import jax
import jax.numpy as jnp
import numpy as np

from .._device import jit, to_device
from .._errors import InputError
from . import _planner
from ._blocks import pair_block_apply, pair_energies, pair_gradients
from ._compute import pair_params_at, segment_pair_sum
from ._geometry import as_cell
from ._pairs import check_periodic_cutoff, neighbor_list_half_pairs
from ._potential import check_potential
from ._prepare import check_species


class _PairEnergy:
    """The custom_jvp energy / forces / H.v triple for one potential, box and species.

    Pairs are the potential's fixed bonds (with their own image shifts) when it has them
    (``potential.bonds()``); otherwise all pairs or a jax-md list, with the minimum image in a
    periodic cell.
    """

    def __init__(self, potential, cell, species):
        self.potential = potential
        self.bonds = potential.bonds()
        use_cell = cell is not None and self.bonds is None
        self.cell = to_device(cell) if use_cell else None
        self.inv_cell = to_device(np.linalg.inv(cell)) if use_cell else None
        self.species = None if species is None else to_device(species)

        @jax.custom_jvp
        def energy(R, i, j, w, shift):
            d, pp = self.geometry(R, i, j, shift)
            return jnp.sum(w * pair_energies(self.potential.phi_eff, d, pp, w > 0))

        @jax.custom_jvp
        def forces(R, i, j, w, shift):
            d, pp = self.geometry(R, i, j, shift)
            _, g = pair_gradients(self.potential.phi_eff, d, pp, w > 0)
            return segment_pair_sum(w[:, None] * g, i, j, R.shape[0])

        @energy.defjvp
        def _energy_jvp(primals, tangents):
            R, i, j, w, shift = primals
            dR = tangents[0]
            return energy(*primals), -jnp.sum(forces(*primals) * dR)

        @forces.defjvp
        def _forces_jvp(primals, tangents):
            R, i, j, w, shift = primals
            dR = tangents[0]
            return forces(*primals), -self.hvp(R, i, j, w, shift, dR)

        self.energy, self.forces = energy, forces

    def geometry(self, R, i, j, shift):
        d = R[j] - R[i]
        if self.bonds is not None:
            d = d + shift
        elif self.cell is not None:  # minimum image (cutoff <= half the cell width, checked)
            s = d @ self.inv_cell
            d = (s - jnp.round(s)) @ self.cell
        s = self.species if self.species is not None else jnp.zeros(R.shape[0], jnp.int32)
        return d, pair_params_at(self.potential, s, i, j)

    def hvp(self, R, i, j, w, shift, t):
        d, pp = self.geometry(R, i, j, shift)
        Kt = pair_block_apply(self.potential.phi_eff, d, pp, t[i] - t[j], w > 0)
        return segment_pair_sum(w[:, None] * Kt, i, j, R.shape[0])

    def pairs(self, R, neighbor):
        """(i, j, w, shift) for positions R: the fixed bonds, all pairs, or a jax-md list."""
        n = R.shape[0]
        if self.bonds is not None:
            bi, bj, bshift = self.bonds
            if n != self.potential.n_atoms:
                raise InputError(f"energy_fn: positions have {n} atoms but the elastic network was built on {self.potential.n_atoms}")
            return jnp.asarray(bi), jnp.asarray(bj), jnp.ones(np.shape(bi)[0], R.dtype), jnp.asarray(bshift, R.dtype)
        if neighbor is None:
            i, j = np.triu_indices(n, k=1)
            w = jnp.ones(i.shape[0], R.dtype)
            return jnp.asarray(i, jnp.int32), jnp.asarray(j, jnp.int32), w, jnp.zeros((1, 3), R.dtype)
        i, j, mask = neighbor_list_half_pairs(neighbor, n, call="energy_fn")
        return i, j, mask.astype(R.dtype), jnp.zeros((1, 3), R.dtype)


def _check_traced_positions(R, species, call):
    if R.ndim != 2 or R.shape[-1] != 3:
        raise InputError(f"{call}: positions must have shape (n_atoms, 3); got {R.shape}")
    if species is not None and species.shape[0] != R.shape[0]:
        raise InputError(f"{call}: species has {species.shape[0]} entries but positions have {R.shape[0]} atoms")


def _build(potential, box, species, call):
    check_potential(potential, call)
    cell = as_cell(box, call=call)
    if cell is not None and potential.bonds() is None:
        if potential.max_cutoff is None:
            raise InputError(f"{call}(box=...) is periodic but the potential ({potential.name}) has no cutoff")
        check_periodic_cutoff(cell, potential.max_cutoff, call=call)
    s = None
    if species is not None or (potential.n_species or 0) > 1:
        # None only without species tables; values, type and range checked as everywhere
        n = np.shape(species)[0] if species is not None and np.ndim(species) == 1 else -1
        if species is not None and n < 0:
            raise InputError(f"{call}(species=...) must be a 1-D array of integers; got shape {np.shape(species)}")
        s = check_species(species, n, potential, call=call)
    return _PairEnergy(potential, cell, s)


def _of_positions(pe, fn, call):
    """fn(R, i, j, w, shift) as a function of positions (and an optional jax-md list)."""

    def f(R, neighbor=None, **kwargs):
        _check_traced_positions(R, pe.species, call)
        return fn(R, *pe.pairs(R, neighbor))

    return f


def energy_fn(potential, *, box=None, species=None):
    """A pure, jit-able energy E(R, neighbor=None) whose derivatives use the per-pair kernels.

    Args:
        potential: an mdhess potential.
        box: None, edge lengths or a (3, 3) cell (rows are cell vectors). Periodic boxes use the
            minimum-image convention here, so the cutoff must not exceed half the shortest
            perpendicular cell width (checked); ``mdhess.energy`` has no such limit.
        species: (N,) integer species, fixed for the returned function.

    Returns:
        E(R, neighbor=None, **kwargs) -> scalar energy. Without ``neighbor`` all pairs are summed
        (O(N^2), with the cutoff applied); with ``neighbor`` (a jax-md ``NeighborList`` in Dense,
        Sparse or OrderedSparse format, built with a cutoff >= the potential's) only its pairs
        are. Extra keyword arguments are ignored (jax-md passes some through).
        ``jax.grad(E)`` is -forces, and its jvp is -H.v, both per pair.
    """
    pe = _build(potential, box, species, "energy_fn")
    return _of_positions(pe, pe.energy, "energy_fn")


def forces_fn(potential, *, box=None, species=None):
    """A pure, jit-able F(R, neighbor=None) = -grad E, per pair, whose jvp is -H.v. See energy_fn."""
    pe = _build(potential, box, species, "forces_fn")
    return _of_positions(pe, pe.forces, "forces_fn")


def hessian_of(energy_fn, positions, *, batch_size=None, memory_limit=None, **kwargs):
    """Hessian of ANY scalar JAX energy, in batches of basis vectors: memory bounded by the batch.

    grad(E) is linearized (compiled once); batches of ``batch_size`` unit vectors are pushed through the
    linear map with vmap and the columns written into the (n, n) output, n = positions.size.

    Args:
        energy_fn: scalar JAX function E(positions, **kwargs).
        positions: array of any shape (typically (N, 3)); the Hessian is over its flattened entries.
        batch_size: tangents per batch (default: chosen so that the batch's temporaries stay within
            an eighth of the memory limit, at most n).
        memory_limit: bytes (or '8G'); default $MDHESS_MEMORY_LIMIT or the free device memory.
        **kwargs: passed to energy_fn (e.g. neighbor=...).

    Returns:
        (n, n) numpy array (float64 when x64 is enabled).

    Raises:
        MemoryPlanError: the output plus one batch cannot fit in the limit.
    """
    R0 = jnp.asarray(positions)
    if not jnp.issubdtype(R0.dtype, jnp.floating):
        R0 = R0.astype(jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32)
    shape = R0.shape
    n = int(np.prod(shape))
    if n == 0:
        raise InputError(f"hessian_of(positions=...) is empty; got shape {shape}")
    if not bool(jnp.all(jnp.isfinite(R0))):
        raise InputError("hessian_of(positions=...) has non-finite entries")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise InputError(f"hessian_of(batch_size=...) must be a positive integer; got {batch_size!r}")

    def grad_flat(x):
        return jax.grad(lambda y: energy_fn(y.reshape(shape), **kwargs))(x).ravel()

    x0 = R0.ravel()

    @jit
    def columns(x, V):
        # linearize inside jit: XLA compiles the linear map once; the primal pass it repeats per
        # batch costs about one gradient, 1/batch of the batch's tangents (an eager
        # jax.linearize runs op by op, several times slower: docs/autodiff.md)
        _, lin = jax.linearize(grad_flat, x)
        return jax.vmap(lin)(V)

    itemsize = np.dtype(x0.dtype).itemsize
    out_bytes = n * n * itemsize
    limit = _planner.memory_limit(memory_limit)

    def plan(b):
        compiled = columns.lower(x0, jax.ShapeDtypeStruct((b, n), x0.dtype)).compile()
        return _planner.from_compiled(f"hessian_of(batch_size={b}, n={n})", compiled)

    if batch_size is None:
        b = min(n, 256)
        p = plan(b)
        while b > 1 and p.total_bytes > limit / 8:
            b = max(1, b // 4)
            p = plan(b)
    else:
        b = min(int(batch_size), n)
        p = plan(b)
    total = _planner.MemoryPlan(p.request, p.total_bytes + out_bytes, {**p.parts, "result": out_bytes})
    _planner.check(total, limit, suggestion="Use a smaller batch_size, or mdhess.hvp for products without H.")

    H = np.empty((n, n), dtype=x0.dtype)
    eye_rows = jnp.arange(b)
    for start in range(0, n, b):
        stop = min(start + b, n)
        cols = jnp.minimum(start + eye_rows, n - 1)  # last batch padded by repeating a column
        V = jnp.zeros((b, n), x0.dtype).at[eye_rows, cols].set(1.0)
        H[:, start:stop] = np.asarray(columns(x0, V))[: stop - start].T
    return H

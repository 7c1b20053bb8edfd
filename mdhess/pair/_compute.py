"""The jitted pair computations every public call shares: the pair prelude, energy and forces,
the 3x3 blocks, and the automatic-differentiation reference Hessian.

Arguments are the device arrays of ``Prepared.arrays``: (potential, R, species, i, j, shift,
mask), a pair p joining atoms i_p and j_p with displacement d_p = R[j_p] - R[i_p] + shift_p.
"""

from functools import partial

import jax
import jax.numpy as jnp

from .._device import jit
from ._blocks import pair_blocks, pair_energies, pair_gradients


def pair_params_at(potential, species, i, j):
    """Per-pair parameters of pairs (i, j): the potential's tables at their species, indexed by
    the pairs' positions in the list (bonded potentials use that index)."""
    return potential.pair_params(species[i], species[j], jnp.arange(i.shape[0]))


def pair_geometry(potential, R, species, i, j, shift):
    """The pair prelude, written once: displacements d (p, 3) = R[j] - R[i] + shift and the
    per-pair parameters."""
    return R[j] - R[i] + shift, pair_params_at(potential, species, i, j)


def segment_pair_sum(x, i, j, n_atoms: int):
    """Per-atom sums of per-pair x: +x at atom i, -x at atom j."""
    return jax.ops.segment_sum(x, i, n_atoms) - jax.ops.segment_sum(x, j, n_atoms)


@partial(jit, static_argnames=("n_atoms",))
def energy_and_forces(potential, R, species, i, j, shift, mask, n_atoms):
    """Total energy and (N, 3) forces."""
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    e, g = pair_gradients(potential.phi_eff, d, pp, mask)
    return jnp.sum(e), segment_pair_sum(g, i, j, n_atoms)


@jit
def blocks_and_check(potential, R, species, i, j, shift, mask):
    """(p, 3, 3) pair blocks and whether all of them are finite."""
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    K = pair_blocks(potential.phi_eff, d, pp, mask)
    return K, jnp.all(jnp.isfinite(K))


def plain_energy(potential, R, species, i, j, shift):
    """Total energy from the plain kernel (no custom derivatives): what ``hessian_ad`` differentiates."""
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    return jnp.sum(pair_energies(potential.phi_eff, d, pp))


@jit
def hessian_ad(potential, R, species, i, j, shift):
    """(3N, 3N) ``jax.hessian`` of the plain energy: the validation reference (small N only)."""
    n = R.shape[0]
    return jax.hessian(plain_energy, argnums=1)(potential, R, species, i, j, shift).reshape(3 * n, 3 * n)

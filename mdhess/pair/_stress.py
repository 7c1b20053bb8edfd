"""Stress of a periodic pair energy: sigma = (1/V) dE/d(strain), ASE's sign convention.

Under a homogeneous strain eps (cell and positions both mapped by I + eps) every pair
displacement d = r_j - r_i + shift becomes (I + eps) d, so for E = sum_p phi(|d_p|)

    dE/d eps_ab = sum_p phi'(r_p) u_pa d_pb = sum_p g_pa d_pb,     g_p = phi'(r_p) u_p

with g_p the per-pair gradient from ``_blocks.pair_gradients`` (the same function the forces
use). The tensor is symmetric because g_p is parallel to d_p. A positive diagonal entry means
the energy rises on expansion (the system is under tension), as in ASE and LAMMPS's
``-pressure`` convention: pressure P = -trace(sigma) / 3.
"""

import jax.numpy as jnp
import numpy as np

from .._device import jit
from .._errors import InputError
from ._blocks import pair_gradients
from ._compute import pair_geometry
from ._prepare import Prepared, raise_nonfinite, resolve_dtype


@jit
def _virial(potential, R, species, i, j, shift, mask):
    """(3, 3) sum over pairs of g_p d_p^T (energy units) and the energy."""
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    e, g = pair_gradients(potential.phi_eff, d, pp, mask)
    W = jnp.einsum("pa,pb->ab", g, d)
    return 0.5 * (W + W.T), jnp.sum(e)


def stress_of_prepared(p: Prepared, call: str = "stress") -> np.ndarray:
    """Stress from an already validated call (used by the ASE calculator to share the pair list)."""
    if p.cell is None:
        raise InputError(f"{call}(box=None): stress needs a periodic box (its volume); got free space")
    if p.potential.bonds() is not None:
        raise InputError(
            f"{call}(potential=...) must be a PairPotential; got {type(p.potential).__name__} "
            "(an elastic network's bonds are tied to its reference box, so a strain is not defined)"
        )
    W, _ = _virial(*p.arrays(resolve_dtype(None, call)))
    W = np.asarray(W, dtype=np.float64)
    if not np.all(np.isfinite(W)):
        raise_nonfinite(call, "stress")
    return W / abs(np.linalg.det(p.cell))


def stress(potential, positions, *, box, species=None) -> np.ndarray:
    """Stress tensor (1/V) dE/d(strain) of a periodic pair energy.

    Args:
        potential: an mdhess ``PairPotential`` with a cutoff.
        positions: (N, 3) in the potential's length units.
        box: scalar, (3,) edge lengths or (3, 3) cell (rows are cell vectors); must be periodic.
        species: (N,) integers 0..S-1, or None (all species 0).

    Returns:
        (3, 3) symmetric numpy float64 array in energy / length^3 (eV/A^3 for metal units).
        ASE's convention: positive entries mean tension; ``atoms.get_stress()`` in Voigt order
        is ``[s[0,0], s[1,1], s[2,2], s[1,2], s[0,2], s[0,1]]``.

    Raises:
        InputError: free space (box=None), a non-pair potential, or bad positions/box/species.
        NonFiniteError: the stress came out NaN or infinite.
    """
    if box is None:
        raise InputError("stress(box=None): stress needs a periodic box (its volume); got free space")
    return stress_of_prepared(Prepared(potential, positions, box, species, "stress"))

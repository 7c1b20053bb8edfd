"""Elastic network models: harmonic springs on a fixed bond list taken from a reference structure.

The anisotropic network model (ANM; Atilgan et al., Biophys. J. 80, 505 (2001); Tirion, Phys.
Rev. Lett. 77, 1905 (1996)): every pair closer than ``cutoff`` in the reference structure is
joined by a spring k/2 (r - r0)^2 with r0 its reference length. The bonds do not change when the
structure moves; at the reference structure the Hessian is the ANM Hessian
k sum_bonds u u^T (the (phi'/r)(I - uu) term vanishes because phi' = 0 there).
"""

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positions, check_real_array
from .._errors import InputError
from ._geometry import as_cell
from ._kernels import harmonic
from ._pairs import PairList, check_cell_images, neighbor_pairs
from ._planner import check_pair_list_memory
from ._potential import Potential


@jax.tree_util.register_pytree_node_class
class ElasticNetwork(Potential):
    """Bonded harmonic springs. Build with ``mdhess.elastic_network``."""

    name = "elastic_network"
    n_species = None

    def __init__(self, i, j, shift, r0, k, n_atoms: int, cell):
        self.i, self.j, self.shift, self.r0, self.k = i, j, shift, r0, k
        self.n_atoms = n_atoms
        self.cell = cell

    def tree_flatten(self):
        cell = None if self.cell is None else tuple(map(tuple, np.asarray(self.cell).tolist()))
        return (self.i, self.j, self.shift, self.r0, self.k), (self.n_atoms, cell)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.i, obj.j, obj.shift, obj.r0, obj.k = children
        obj.n_atoms, cell = aux
        obj.cell = None if cell is None else np.asarray(cell)
        return obj

    @property
    def n_bonds(self) -> int:
        return int(np.shape(self.i)[0])

    @property
    def max_cutoff(self):
        return None

    def bonds(self):
        """(i, j, shift): the bonds and the image shifts fixed in the reference structure."""
        return self.i, self.j, self.shift

    def phi_eff(self, r, pp):
        return harmonic(r, k=pp["k"], r0=pp["r0"])

    def pair_params(self, si, sj, index=None) -> dict:
        index = jnp.arange(jnp.shape(si)[0]) if index is None else index
        k = jnp.broadcast_to(jnp.asarray(self.k), (self.n_bonds,))
        return {
            "k": jnp.take(k, index, mode="fill", fill_value=0.0),
            "r0": jnp.take(jnp.asarray(self.r0), index, mode="fill", fill_value=1.0),
        }

    def pair_list(self, positions, cell, species, *, call: str) -> PairList:
        if positions.shape[0] != self.n_atoms:
            raise InputError(
                f"{call}(positions=...) has {positions.shape[0]} atoms but the elastic network was "
                f"built on {self.n_atoms}"
            )
        same = (cell is None and self.cell is None) or (
            cell is not None and self.cell is not None and np.allclose(cell, self.cell)
        )
        if not same:
            raise InputError(
                f"{call}(box=...) must be the box the elastic network was built with "
                f"({None if self.cell is None else self.cell.tolist()}); got {None if cell is None else cell.tolist()}"
            )
        return PairList(np.asarray(self.i), np.asarray(self.j), None if self.cell is None else np.asarray(self.shift), self.n_atoms)

    def describe(self) -> dict:
        return {"kernel": "elastic_network", "n_bonds": self.n_bonds, "k": np.asarray(self.k).tolist()}

    def __repr__(self):
        return f"ElasticNetwork(n_atoms={self.n_atoms}, n_bonds={self.n_bonds}, k={np.asarray(self.k).tolist()})"


def elastic_network(reference_positions, cutoff: float, k=1.0, *, box=None) -> ElasticNetwork:
    """Anisotropic network model: springs between every pair within ``cutoff`` of a reference.

    Args:
        reference_positions: (N, 3) reference structure (e.g. C-alpha atoms), length units.
        cutoff: bond cutoff in length units (> 0); typical C-alpha ANM uses 13-15 A.
        k: spring constant, energy / length^2, scalar.
        box: optional periodic box of the reference (same conventions as everywhere).

    Returns:
        ElasticNetwork whose energy is sum_bonds k/2 (r - r0)^2 with r0 the reference distances.
    """
    R = check_positions(reference_positions, call="elastic_network", name="reference_positions", min_atoms=2)
    c = check_real_array(cutoff, call="elastic_network", name="cutoff", what="a real scalar > 0")
    if c.ndim != 0 or not np.isfinite(c) or c <= 0:
        raise InputError(f"elastic_network(cutoff=...) must be a finite scalar > 0; got {cutoff!r}")
    kk = check_real_array(k, call="elastic_network", name="k", what="a real scalar > 0")
    if kk.ndim != 0 or not np.isfinite(kk) or kk <= 0:
        raise InputError(f"elastic_network(k=...) must be a finite scalar > 0; got {k!r}")
    cell = as_cell(box, call="elastic_network")
    if cell is not None:
        check_cell_images(cell, float(c), call="elastic_network")
        check_pair_list_memory(R.shape[0], cell, float(c), call="elastic_network")
    pl = neighbor_pairs(R, cell, float(c), call="elastic_network")
    r0 = np.linalg.norm(pl.displacements(R), axis=1)
    keep = (r0 < c) & (r0 > 0)
    if np.any(r0 == 0):
        p = int(np.argmax(r0 == 0))
        raise InputError(
            f"elastic_network(reference_positions=...) has atoms {pl.i[p]} and {pl.j[p]} at the same position"
        )
    pl = pl.select(keep)
    shift = np.zeros((pl.n_pairs, 3)) if pl.shift is None else pl.shift
    return ElasticNetwork(pl.i, pl.j, shift, r0[keep], kk, R.shape[0], cell)

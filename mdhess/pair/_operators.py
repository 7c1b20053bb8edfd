"""H.v operators over the pair blocks: one abstract ``HessianOperator`` (``mv`` and what its
consumers need: ``diagonal_blocks``, ``blocks``, ``to_bsr``, ``positions``) and one class per
representation: blocks stored once, or recomputed on every product (matrix-free).

The normal-mode solvers use only these methods, never an operator's fields.
"""

from functools import partial

import jax.numpy as jnp
import numpy as np
import scipy.sparse

from .._device import jit, to_device
from .._errors import InputError
from ._blocks import pair_block_apply
from ._compute import blocks_and_check, pair_geometry, segment_pair_sum
from ._layouts import bsr_from_blocks, diagonal_blocks


@partial(jit, static_argnames=("n_atoms",))
def _apply_stored(K, i, j, v, n_atoms: int):
    w = v[i] - v[j]
    Kw = jnp.einsum("pab,pb...->pa...", K, w)
    return segment_pair_sum(Kw, i, j, n_atoms)


@partial(jit, static_argnames=("n_atoms",))
def _apply_recompute(potential, R, species, i, j, shift, mask, v, n_atoms: int):
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    Kw = pair_block_apply(potential.phi_eff, d, pp, v[i] - v[j], mask)
    return segment_pair_sum(Kw, i, j, n_atoms)


class HessianOperator:
    """A (3N, 3N) symmetric Hessian available through products H @ v.

    ``H @ v`` (or ``mv``) takes v of shape (3N,) or (3N, k) and returns a JAX array of the same
    shape. ``as_linear_operator()`` gives a ``scipy.sparse.linalg.LinearOperator``;
    ``as_matrix()`` the dense matrix (for checks on small systems).

    Operators built from pair blocks (``has_blocks``) also give ``blocks()``,
    ``diagonal_blocks()``, ``to_bsr()`` and ``n_pair_slots``; ``positions`` is the (N, 3)
    positions when the operator knows them (else None). A subclass implements ``_apply``.
    """

    n_atoms: int
    dtype: np.dtype
    has_blocks: bool = False

    @property
    def positions(self) -> np.ndarray | None:
        """(N, 3) float64 positions the operator was built on, or None when it does not know them."""
        return None

    @property
    def n_pair_slots(self) -> int | None:
        """Pair slots of the block list (padding included), or None for an operator without blocks."""
        return None

    def blocks(self):
        """(K, i, j): (p, 3, 3) pair blocks and their atom indices, device arrays (padding pairs
        have zero blocks)."""
        raise NotImplementedError(f"{type(self).__name__} has no pair blocks")

    def diagonal_blocks(self):
        """(N, 3, 3) diagonal blocks of H (for block-Jacobi preconditioners)."""
        K, i, j = self.blocks()
        return diagonal_blocks(K, i, j, self.n_atoms)

    def to_bsr(self) -> scipy.sparse.bsr_matrix:
        """The matrix as a canonical float64 scipy BSR (blocks (3, 3)); transient, for
        preconditioner setup and factorisations."""
        K, i, j = self.blocks()
        diag = np.asarray(diagonal_blocks(K, i, j, self.n_atoms))
        return bsr_from_blocks(
            np.asarray(K, np.float64), diag.astype(np.float64), np.asarray(i), np.asarray(j), self.n_atoms
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (3 * self.n_atoms, 3 * self.n_atoms)

    def _apply(self, v):  # v: (N, 3) or (N, 3, k)
        raise NotImplementedError

    def mv(self, v):
        v = to_device(v, self.dtype)
        n3 = 3 * self.n_atoms
        if v.ndim not in (1, 2) or v.shape[0] != n3:
            raise InputError(f"HessianOperator @ v expects v of shape ({n3},) or ({n3}, k); got {v.shape}")
        out = self._apply(v.reshape((self.n_atoms, 3) + v.shape[1:]))
        return out.reshape(v.shape)

    __matmul__ = mv

    def matmat(self, V):
        return self.mv(V)

    def as_matrix(self):
        return self.mv(jnp.eye(3 * self.n_atoms, dtype=self.dtype))

    def as_linear_operator(self):
        """scipy LinearOperator (numpy in, numpy out) for scipy.sparse.linalg solvers."""
        from scipy.sparse.linalg import LinearOperator

        mv = lambda v: np.asarray(self.mv(np.asarray(v)))  # noqa: E731
        return LinearOperator(self.shape, matvec=mv, matmat=mv, rmatvec=mv, rmatmat=mv, dtype=self.dtype)


class StoredBlockOperator(HessianOperator):
    """Linearized operator: the pair blocks K_p are computed once and stored (memory 9p floats);
    each product is then a gather, a batched 3x3 product and a segment sum."""

    has_blocks = True

    def __init__(self, K, i, j, n_atoms: int):
        self.K, self.i, self.j, self.n_atoms = K, i, j, n_atoms
        self.dtype = np.dtype(K.dtype)

    @property
    def n_pair_slots(self) -> int:
        return int(np.shape(self.i)[0])

    def _apply(self, v):
        return _apply_stored(self.K, self.i, self.j, v, self.n_atoms)

    def blocks(self):
        return self.K, self.i, self.j


class MatrixFreeOperator(HessianOperator):
    """Matrix-free operator: blocks are recomputed from positions on every product, never
    stored (memory O(N + p) for the pair list and per-pair scalars)."""

    has_blocks = True

    def __init__(self, potential, R, species, i, j, shift, mask, n_atoms: int):
        self.args = (potential, R, species, i, j, shift, mask)
        self.n_atoms = n_atoms
        self.dtype = np.dtype(R.dtype)

    @property
    def positions(self) -> np.ndarray:
        return np.asarray(self.args[1], dtype=np.float64)

    @property
    def n_pair_slots(self) -> int:
        return int(np.shape(self.args[3])[0])

    def _apply(self, v):
        return _apply_recompute(*self.args, v, n_atoms=self.n_atoms)

    def blocks(self):
        """Computes the blocks once (they are not kept)."""
        K, _ = blocks_and_check(*self.args)
        return K, self.args[3], self.args[4]

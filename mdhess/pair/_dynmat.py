"""The dynamical matrix D(q) of a periodic cell: an exact lattice sum over the pair blocks.

For a cell of n atoms with positions r_i and masses m_i, lattice images L (r_{j+L} = r_j + L),
and the Hessian blocks H_{i, j+L} of the infinite crystal (the 3x3 pair blocks of
``_blocks.pair_blocks``, the only copy of that formula):

    D_ij(q) = (m_i m_j)^(-1/2) sum_L H_{i, j+L} exp(i q . (r_{j+L} - r_i))

Each listed pair p = (i, j, shift) with displacement d = r_j - r_i + shift and block K adds

    D_ij += -K e^{i q.d},   D_ji += -K e^{-i q.d},   D_ii += K,   D_jj += K

(an atom paired with its own image, i == j, adds 2 K (1 - cos q.d) to D_ii), before the mass
weighting. q is given in reduced coordinates of the reciprocal lattice of the cell (the
convention of phonopy and ASE's ``BandPath``): q_cart = 2 pi q_red @ inv(cell).T, so that
q.d = 2 pi q_red . (d @ inv(cell)).

The phase uses the atoms' positions (r_{j+L} - r_i), which is phonopy's convention (its
``DynamicalMatrix`` sums exp(2 pi i q.(r_{j'} - r_i)) over the shortest supercell vectors), so at
a q commensurate with a phonopy supercell the two matrices are equal entry by entry. ASE's
``Phonons`` uses the cell-origin phase exp(i q.L) instead: its D'(q) = U^dagger D(q) U with the
diagonal unitary U = diag(exp(i q.r_i)), which has the same eigenvalues, and eigenvectors that
differ by those per-atom phases. D(q + G) = U_G^dagger D(q) U_G for a reciprocal lattice vector G
(eigenvalues periodic, eigenvectors not).

Every pair within the cutoff is listed, including several images of the same pair in cells
smaller than twice the cutoff (``_pairs.neighbor_pairs``), so small and triclinic cells are
exact; no supercell is involved.
"""

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_real_array
from .._device import jit, to_device
from .._errors import InputError, NotAtEquilibriumWarning
from ._compute import blocks_and_check, energy_and_forces
from ._prepare import Prepared, raise_nonfinite

EQUILIBRIUM_FORCE_TOL = 1e-6
"""A cell whose largest force exceeds this fraction of (largest diagonal Hessian entry x shortest
pair distance) is not at mechanical equilibrium: ``DynamicalMatrix`` warns (the harmonic phonons
of a structure under force describe no stable lattice)."""

Q_CHUNK = 64
Q_SMALL = 8
"""q-points per jitted call, padded: Q_SMALL for up to Q_SMALL q-points, Q_CHUNK otherwise, so
two compiled functions per cell serve every batch size."""


def check_masses_of(masses, n_atoms: int, *, call: str) -> np.ndarray:
    """(n,) float64 masses: ones for None, one value broadcast, each finite and > 0."""
    if masses is None:
        return np.ones(n_atoms)
    m = check_real_array(masses, call=call, name="masses", what="real masses, one per atom")
    if m.ndim == 0:
        m = np.full(n_atoms, float(m))
    if m.shape != (n_atoms,):
        raise InputError(f"{call}(masses=...) needs one mass per atom, shape ({n_atoms},); got shape {m.shape}")
    bad = ~np.isfinite(m) | (m <= 0)
    if bad.any():
        a = int(np.argmax(bad))
        raise InputError(f"{call}(masses=...) must be finite and > 0; got {float(m[a])!r} at atom {a}")
    return m


def check_qpoints(q, *, call: str, name: str = "q") -> tuple[np.ndarray, bool]:
    """(nq, 3) float64 reduced q-points and whether a single (3,) q was given."""
    a = check_real_array(q, call=call, name=name, what="reduced q-points, shape (3,) or (nq, 3)")
    single = a.ndim == 1
    if single:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != 3 or a.shape[0] == 0:
        raise InputError(f"{call}({name}=...) must have shape (3,) or (nq, 3) (reduced coordinates); got {np.shape(q)}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{call}({name}=...) has non-finite entries: {a[~np.all(np.isfinite(a), axis=1)][0].tolist()}")
    return a, single


def _dynmat_one(K, d, i, j, w, qc, n_atoms: int):
    """(3n, 3n) complex D at one Cartesian q (the lattice sum above); differentiable in qc."""
    x = d @ qc
    ph = jax.lax.complex(jnp.cos(x), jnp.sin(x))  # (p,) exp(i q.d)
    Kc = K.astype(ph.dtype)
    D = jnp.zeros((n_atoms, n_atoms, 3, 3), ph.dtype)
    D = D.at[i, j].add(-Kc * ph[:, None, None])
    D = D.at[j, i].add(-Kc * jnp.conj(ph)[:, None, None])  # K is symmetric: H_{j,i-L} = -K
    D = D.at[i, i].add(Kc)
    D = D.at[j, j].add(Kc)
    D = D * (w[:, None] * w[None, :]).astype(ph.dtype)[:, :, None, None]
    return D.transpose(0, 2, 1, 3).reshape(3 * n_atoms, 3 * n_atoms)


@partial(jit, static_argnames=("n_atoms",))
def dynmat_batch(K, d, i, j, w, qc, n_atoms):
    """(nq, 3n, 3n) D at Cartesian wavevectors qc (nq, 3): one vmapped lattice sum."""
    return jax.vmap(lambda q: _dynmat_one(K, d, i, j, w, q, n_atoms))(qc)


@partial(jit, static_argnames=("n_atoms",))
def dynmat_and_gradient_batch(K, d, i, j, w, qc, n_atoms):
    """D (nq, 3n, 3n) and dD/dq_cart (nq, 3, 3n, 3n) by forward-mode autodiff in q."""

    def one(q):
        f = lambda x: _dynmat_one(K, d, i, j, w, x, n_atoms)
        D, dD = jax.vmap(lambda t: jax.jvp(f, (q,), (t,)), out_axes=(None, 0))(jnp.eye(3, dtype=q.dtype))
        return D, dD

    return jax.vmap(one)(qc)


class DynamicalMatrix:
    """The q-independent part of D(q) for one cell: pair blocks, displacements and masses.

    Built once (pair list, blocks, equilibrium check); ``at(q)`` evaluates D at any batch of
    reduced q-points in jitted chunks of ``Q_CHUNK``.

    Attributes:
        cell: (3, 3) cell, rows are cell vectors (length units).
        positions: (n, 3) positions. masses: (n,) masses. n_atoms: n.
        reciprocal: (3, 3) reciprocal cell, rows b_k with a_i . b_k = 2 pi delta_ik (1 / length).
        max_force: the largest force on an atom of the cell (energy / length).
        scale: the eigenvalue scale, max over atoms of the diagonal of sum_p K / m_i (the onsite
            blocks of the Hessian over the mass; energy / (length^2 mass)).
    """

    def __init__(self, potential, positions, box, *, masses=None, species=None, call="dynamical_matrix", warn=True):
        if box is None:
            raise InputError(
                f"{call}(box=None): phonons need a periodic cell; pass box= (edge lengths or a (3, 3) "
                "cell whose rows are the cell vectors)"
            )
        p = Prepared(potential, positions, box, species, call)
        self.call = call
        self.cell = p.cell
        self.positions = p.R
        self.n_atoms = p.n_atoms
        self.masses = check_masses_of(masses, p.n_atoms, call=call)
        self.reciprocal = 2 * np.pi * np.linalg.inv(self.cell).T
        args = p.arrays(jnp.float64)
        pot, R, s, i, j, shift, mask = args
        K, ok = blocks_and_check(pot, R, s, i, j, shift, mask)
        if not bool(ok):
            raise_nonfinite(call, "pair blocks")
        _, F = energy_and_forces(*args, n_atoms=p.n_atoms)
        # host-side numpy from here (eager JAX ops would each compile a small program)
        F = np.asarray(F)
        fnorm = np.linalg.norm(F, axis=1)
        self.max_force = float(fnorm.max())
        i_h, j_h, Rh = np.asarray(i), np.asarray(j), np.asarray(R)
        self._K = K
        self._d = to_device(Rh[j_h] - Rh[i_h] + np.asarray(shift))
        self._i, self._j = i, j
        self._w = to_device(1.0 / np.sqrt(self.masses))
        # onsite blocks sum_p K (no phases): their largest diagonal entry over the mass sets the
        # eigenvalue scale (D(0) itself can vanish: one atom per cell)
        Kd = np.diagonal(np.asarray(K), axis1=1, axis2=2)
        onsite = np.zeros((p.n_atoms, 3))
        np.add.at(onsite, i_h, Kd)
        np.add.at(onsite, j_h, Kd)
        self.scale = float(np.max(np.abs(onsite) / self.masses[:, None]))
        pl = p.pairs
        dmin = float(np.min(pl.distances if pl.distances is not None else np.linalg.norm(pl.displacements(p.R), axis=1))) if pl.n_pairs else 0.0
        hscale = self.scale * float(np.max(self.masses))
        self.force_tol = EQUILIBRIUM_FORCE_TOL * hscale * dmin
        if warn and self.max_force > self.force_tol:
            a = int(np.argmax(fnorm))
            warnings.warn(
                f"{call}: the structure is not at mechanical equilibrium: the largest force is "
                f"{self.max_force:.3g} (energy/length) on atom {a}, above {self.force_tol:.3g}; the harmonic "
                "phonons assume a minimum of the energy (relax the positions first)",
                NotAtEquilibriumWarning,
                stacklevel=3,
            )

    def cartesian(self, q_red: np.ndarray) -> np.ndarray:
        """Cartesian wavevectors (nq, 3), 1/length, of reduced q-points (nq, 3)."""
        return np.asarray(q_red, dtype=np.float64) @ self.reciprocal

    def _chunks(self, qc, fn):
        nq = qc.shape[0]
        cap = Q_CHUNK if nq > Q_SMALL else Q_SMALL
        out = []
        for a in range(0, nq, cap):
            blk = qc[a : a + cap]
            m = blk.shape[0]
            if m < cap:
                blk = np.concatenate([blk, np.zeros((cap - m, 3))])
            res = fn(self._K, self._d, self._i, self._j, self._w, to_device(blk, np.float64), n_atoms=self.n_atoms)
            out.append(jax.tree.map(lambda x, m=m: np.asarray(x)[:m], res))
        if len(out) == 1:
            return out[0]
        return jax.tree.map(lambda *xs: np.concatenate(xs), *out)

    def _batch(self, qc):
        return self._chunks(np.asarray(qc, dtype=np.float64), dynmat_batch)

    def at(self, q) -> np.ndarray:
        """D at reduced q: (3n, 3n) for q of shape (3,), (nq, 3n, 3n) for (nq, 3); complex128,
        energy / (length^2 mass)."""
        qr, single = check_qpoints(q, call=self.call)
        D = self._batch(self.cartesian(qr))
        return D[0] if single else D

    def with_gradient(self, q_red: np.ndarray):
        """(D (nq, 3n, 3n), dD/dq_cart (nq, 3, 3n, 3n)) at reduced q-points (nq, 3); the derivative
        with respect to the Cartesian wavevector (energy / (length mass)), by autodiff."""
        return self._chunks(self.cartesian(q_red), dynmat_and_gradient_batch)


def dynamical_matrix(potential, R, box, q, *, masses=None, species=None):
    """Dynamical matrix D(q) of a periodic cell, an exact lattice sum over every image in the cutoff.

        D_ij(q) = (m_i m_j)^(-1/2) sum_L H_{i, j+L} exp(i q . (r_{j+L} - r_i))

    (phonopy's phase convention; see docs/phonons.md for ASE's and the relation between them).

    Args:
        potential: an mdhess potential.
        R: (n, 3) positions of the atoms of the cell, length units.
        box: the periodic cell: (3,) edge lengths or a (3, 3) matrix whose rows are the cell vectors.
        q: (3,) or (nq, 3) wavevectors in reduced coordinates of the reciprocal lattice
            (q_cart = 2 pi q @ inv(cell).T), as phonopy and ASE's BandPath give them.
        masses: (n,) masses (or one for all), mass units; None: unit masses.
        species: (n,) species indices, as for ``mdhess.hessian``.

    Returns:
        numpy complex128, Hermitian: (3n, 3n) for a single q, (nq, 3n, 3n) for a batch (all q in
        jitted chunks), row/column index 3 i + a; energy / (length^2 mass).

    Raises:
        InputError: no periodic box, q of the wrong shape, bad positions, masses or species.
        Warns ``NotAtEquilibriumWarning`` (with the largest force) when the cell is not at equilibrium.
    """
    qr, single = check_qpoints(q, call="dynamical_matrix")
    dm = DynamicalMatrix(potential, R, box, masses=masses, species=species, call="dynamical_matrix")
    D = dm._batch(dm.cartesian(qr))
    return D[0] if single else D

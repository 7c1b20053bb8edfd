"""The Hessian as the normal-mode solvers see it: one representation, made once at the entry of
``normal_modes`` from whatever was passed (a dense array, a scipy sparse matrix, an mdhess
``HessianOperator``), that answers what the solvers ask: size, fill, symmetry, the mass-weighted
matrix A = M^-1/2 H M^-1/2 (dense or CSR), its 3x3 diagonal blocks, products X -> A X. Also the
checks of the per-atom arguments (masses, positions) and the ``SolveRequest`` passed to solvers.

All mass weighting goes through ``mass_weight`` (mdhess/modes/_massweight.py).
"""

import itertools
import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from .._checks import check_real_array
from .._errors import InputError
from ._massweight import mass_weight

PARALLEL_MIN_ROWS = 20000  # sparse products split over threads from this many rows


# -- what a solver is asked -------------------------------------------------------------------------
@dataclass(frozen=True)
class SolveRequest:
    """What the solvers are asked: eigenpairs of Q A Q on the complement of the rigid-body
    directions (how many vibrational pairs, ``kv``, each solver call is told separately).

    k: the modes asked of normal_modes (projected ones included). which: "lowest" or "highest".
    solver: "dense", "shift-invert" or "lobpcg" (resolved). positions, cell: (N, 3) positions and
    the periodic cell as given (or None). tol, maxiter, sigma, seed: as for normal_modes.
    progress: show the solver's progress on stderr.
    """

    k: int
    which: str
    solver: str
    positions: np.ndarray | None
    cell: np.ndarray | None
    tol: float
    maxiter: int
    sigma: float | None
    seed: int
    progress: bool = False


# -- products ---------------------------------------------------------------------------------------
class ParallelCSR:
    """A @ X for CSR A, split by rows over threads (scipy's sparse products release the GIL)."""

    def __init__(self, A, n_threads=None):
        self.A = A
        n_threads = n_threads or min(4, os.cpu_count() or 1)
        self.parts = []
        if n_threads > 1 and A.shape[0] >= PARALLEL_MIN_ROWS:
            cuts = np.linspace(0, A.shape[0], n_threads + 1).astype(int)
            self.parts = [A[a:b] for a, b in itertools.pairwise(cuts)]
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(n_threads)

    def __call__(self, X):
        if not self.parts:
            return self.A @ X
        futs = [self.pool.submit(p.__matmul__, X) for p in self.parts]
        return np.vstack([f.result() for f in futs])

    def close(self):
        if self.parts:
            self.pool.shutdown(wait=False)


def csr_diagonal_blocks(A):
    """(N, 3, 3) diagonal blocks of a (3N, 3N) CSR matrix."""
    n = A.shape[0] // 3
    D = np.zeros((n, 3, 3))
    for a in range(3):
        for b in range(3):
            D[:, a, b] = A.diagonal(b - a)[np.arange(n) * 3 + min(a, b)]
    return D


# -- the Hessian --------------------------------------------------------------------------------
class HessianInput:
    """A (3N, 3N) Hessian H given to ``normal_modes``, in one of three representations.

    Methods taking ``masses`` ((N,) float64, validated) work on A = M^-1/2 H M^-1/2. The
    mass-weighted CSR is kept once made (the LOBPCG products, its preconditioner and the
    eigenvalue scale share it); other results are made on each call.

    is_matrix: H's entries are given (dense or sparse), as opposed to an operator.
    can_factorise: a sparse matrix of H can be assembled (for shift-invert).
    """

    is_matrix = True
    can_factorise = True

    def __init__(self, H):
        self.H = H
        self.shape = tuple(H.shape)
        self.n3 = int(H.shape[0])
        self._csr = None  # (masses, mass-weighted CSR)

    @property
    def n_atoms(self) -> int:
        return self.n3 // 3

    @property
    def positions(self):
        """(N, 3) positions H was built on when it knows them (an operator may), else None."""
        return None

    def fill(self) -> float:
        """Fraction of the (3N)^2 entries that are stored or structurally non-zero."""
        raise NotImplementedError

    def check_symmetric(self) -> None:
        """InputError when H is not finite or not symmetric (the deviation found is stated)."""
        raise NotImplementedError

    def mass_weighted_dense(self, masses) -> np.ndarray:
        """A as a dense float64 array."""
        raise NotImplementedError

    def _mass_weighted_csr(self, masses):
        raise NotImplementedError

    def mass_weighted_csr(self, masses):
        """A as a scipy CSR matrix (assembled from the blocks for an operator)."""
        if self._csr is None or self._csr[0] is not masses:
            self._csr = (masses, self._mass_weighted_csr(masses))
        return self._csr[1]

    def diagonal_blocks(self, masses) -> np.ndarray:
        """(N, 3, 3) diagonal blocks of A."""
        return csr_diagonal_blocks(self.mass_weighted_csr(masses))

    def matmat(self, masses):
        """Function X (3N, b) -> A X (float64); call its ``close()`` (when it has one) after use."""
        return ParallelCSR(self.mass_weighted_csr(masses))


class DenseInput(HessianInput):
    """A dense (3N, 3N) float64 array (numpy, or JAX converted)."""

    def fill(self) -> float:
        return np.count_nonzero(self.H) / float(self.n3) ** 2

    def check_symmetric(self) -> None:
        H = self.H
        if not np.all(np.isfinite(H)):
            raise InputError("normal_modes(H=...) has non-finite entries (NaN or inf)")
        D = np.abs(H - H.T)
        scale = max(float(np.abs(H).max()), 1e-300)
        a, b = np.unravel_index(int(np.argmax(D)), D.shape)
        _raise_if_asymmetric(a, b, float(D[a, b]), scale)

    def mass_weighted_dense(self, masses) -> np.ndarray:
        return mass_weight(self.H, masses)

    def _mass_weighted_csr(self, masses):
        return scipy.sparse.csr_matrix(mass_weight(self.H, masses))


class SparseInput(HessianInput):
    """A scipy sparse matrix (BSR with (3, 3) blocks from mdhess.hessian, or any other)."""

    def fill(self) -> float:
        return self.H.nnz / float(self.n3) ** 2

    def check_symmetric(self) -> None:
        H = self.H
        if not np.all(np.isfinite(H.data)):
            raise InputError("normal_modes(H=...) has non-finite entries (NaN or inf)")
        C = H.tocsr()
        x, y = np.random.default_rng(0).standard_normal((2, self.n3))
        hx, hy = C @ x, C @ y
        if abs(float(x @ hy - y @ hx)) <= 1e-12 * float(np.linalg.norm(hx) * np.linalg.norm(y)):
            # a random probe of x.(Hy) - y.(Hx) is zero for symmetric H (and almost surely not otherwise)
            return
        D = abs(C - C.T).tocoo()
        scale = max(float(abs(C).max()), 1e-300)
        if D.nnz == 0:
            return
        p = int(np.argmax(D.data))
        _raise_if_asymmetric(int(D.row[p]), int(D.col[p]), float(D.data[p]), scale)

    def mass_weighted_dense(self, masses) -> np.ndarray:
        return self._mass_weighted_csr(masses).toarray()

    def _mass_weighted_csr(self, masses):
        return mass_weight(self.H, masses).tocsr()  # BSR: blocks scaled per atom pair, then CSR


class OperatorInput(HessianInput):
    """An mdhess ``HessianOperator``: products, and its pair blocks where it has them (never
    densified unless the dense solver is asked for)."""

    is_matrix = False

    def __init__(self, H):
        super().__init__(H)
        self.can_factorise = bool(H.has_blocks)

    @property
    def positions(self):
        return self.H.positions

    def fill(self) -> float:
        slots = self.H.n_pair_slots
        if slots is None:
            return 1.0  # an operator of unknown structure
        n3 = self.n3
        return min(9.0 * (2 * slots + n3 // 3) / float(n3) ** 2, 1.0)

    def check_symmetric(self) -> None:
        # one random probe, x.(Hy) against y.(Hx)
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((2, self.n3))
        hx, hy = np.asarray(self.H @ x), np.asarray(self.H @ y)
        dev = abs(float(x @ hy - y @ hx))
        scale = max(float(np.linalg.norm(hx) * np.linalg.norm(y)), 1e-300)
        if dev > 1e-10 * scale:
            raise InputError(
                f"normal_modes(H=...) operator is not symmetric: x.(H y) - y.(H x) = {dev:.3g} "
                f"for random x, y (relative {dev / scale:.2g})"
            )

    def mass_weighted_dense(self, masses) -> np.ndarray:
        return mass_weight(np.asarray(self.H.as_matrix(), dtype=np.float64), masses)

    def _mass_weighted_csr(self, masses):
        return mass_weight(self.H.to_bsr(), masses).tocsr()  # transient BSR of the blocks

    def diagonal_blocks(self, masses) -> np.ndarray:
        s_atom = 1.0 / np.sqrt(masses)
        return np.asarray(self.H.diagonal_blocks()) * (s_atom[:, None, None] ** 2)

    def matmat(self, masses):
        s = np.repeat(1.0 / np.sqrt(masses), 3)
        op = self.H

        def matmat(X):
            return s[:, None] * np.asarray(op @ (s[:, None] * X))

        return matmat


def _raise_if_asymmetric(a: int, b: int, dev: float, scale: float) -> None:
    if dev > 1e-10 * scale:
        raise InputError(
            f"normal_modes(H=...) is not symmetric: |H[{a}, {b}] - H[{b}, {a}]| = {dev:.3g} "
            f"(relative to max |H| = {scale:.3g}: {dev / scale:.2g}); symmetrise it or check its assembly"
        )


def hessian_input(H) -> HessianInput:
    """The HessianInput for ``normal_modes(H=...)``; InputError unless H is a square (3N, 3N)
    dense array, scipy sparse matrix or HessianOperator."""
    from ..pair._operators import HessianOperator

    if isinstance(H, HessianOperator):
        inp = OperatorInput(H)
    elif scipy.sparse.issparse(H):
        if H.ndim != 2 or H.shape[0] != H.shape[1]:
            raise InputError(f"normal_modes(H=...) must be a square (3N, 3N) matrix; got shape {H.shape}")
        inp = SparseInput(H)
    else:
        A = check_real_array(
            H, call="normal_modes", name="H",
            what="a real (3N, 3N) array, a scipy sparse matrix or an mdhess HessianOperator",
        )  # fmt: skip
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise InputError(f"normal_modes(H=...) must be a square (3N, 3N) matrix; got shape {A.shape}")
        inp = DenseInput(A)
    n3 = inp.n3
    if n3 % 3 or n3 == 0:
        raise InputError(
            f"normal_modes(H=...) must be (3N, 3N); got {inp.shape} ({n3} is not a positive multiple of 3)"
        )
    return inp


# -- per-atom arguments -----------------------------------------------------------------------------
def check_masses(masses, n_atoms: int) -> np.ndarray:
    """(N,) float64 masses for ``normal_modes(masses=...)`` (ones for None, one value broadcast)."""
    if masses is None:
        return np.ones(n_atoms)
    m = check_real_array(masses, call="normal_modes", name="masses", what="numeric: real masses, one per atom")
    if m.ndim == 0:
        m = np.full(n_atoms, float(m))
    if m.shape != (n_atoms,):
        raise InputError(
            f"normal_modes(masses=...) needs one mass per atom: shape ({n_atoms},) for a "
            f"({3 * n_atoms}, {3 * n_atoms}) Hessian; got shape {m.shape}"
        )
    bad = ~np.isfinite(m) | (m <= 0)
    if bad.any():
        a = int(np.argmax(bad))
        raise InputError(f"normal_modes(masses=...) must be finite and > 0; got {m[a]!r} at atom {a}")
    return m

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
    progress: show the solver's progress on stderr. precision: "float64" or "mixed" (jax-lobpcg:
    float32 products, then float64; mdhess/modes/_jax_lobpcg.py).
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
    precision: str = "float64"


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


# -- BSR matrices of 3x3 blocks, read in place --------------------------------------------------------
ROW_CHUNK_BLOCKS = 1 << 22  # stored blocks per chunk of block rows in the helpers below (~300 MB)


def is_canonical_bsr3(H) -> bool:
    """H is a scipy BSR matrix of 3x3 blocks with sorted, unique block indices (mdhess's output)."""
    return H.format == "bsr" and H.blocksize == (3, 3) and bool(H.has_canonical_format)


def row_chunks(B, max_blocks: int | None = None):
    """(a, b) atom ranges whose block rows hold about ``max_blocks`` stored blocks each (default
    ``ROW_CHUNK_BLOCKS``, read at each call)."""
    max_blocks = ROW_CHUNK_BLOCKS if max_blocks is None else max_blocks
    n, ip = B.shape[0] // 3, B.indptr
    a = 0
    while a < n:
        b = int(np.searchsorted(ip, ip[a] + max_blocks, side="right")) - 1
        b = min(max(b, a + 1), n)
        yield a, b
        a = b


CSR_MEMORY_SHARE = 0.8  # of the available memory, for the CSR, its making and the solver's vectors
SOLVER_BLOCKS = 20  # (3N, columns) float64 arrays a LOBPCG holds at its peak (measured ~16.5)


def solver_bytes(n: int, columns: int, shards: int = 1) -> int:
    """Bytes of a LOBPCG's (n, columns) float64 arrays at its peak (SOLVER_BLOCKS of them:
    measured 16.5 at N = 10^6, docs/scaling.md), on each device when their rows are split across
    ``shards`` devices (plus the product's input with its halo and its output: counted as two
    whole vectors, the most they can be; ``ShardedHessianOperator.halo_rows`` is usually far less)."""
    if shards > 1:
        return SOLVER_BLOCKS * n * columns * 8 // shards + 2 * n * columns * 8
    return SOLVER_BLOCKS * n * columns * 8


def csr_fits(B, columns: int) -> bool:
    """Whether the mass-weighted CSR of a BSR matrix of 3x3 blocks (made through a scaled copy of
    the blocks: 9 numbers a block, then 9 numbers and 9 column indices a block) fits beside
    ``columns``-wide solver vectors in ``CSR_MEMORY_SHARE`` of the memory available (or
    $MDHESS_MEMORY_LIMIT)."""
    from ..pair._planner import memory_limit

    nb = int(B.indptr[-1])
    idx = 4 if 9 * nb < 2**31 else 8
    need = nb * 9 * 8 + nb * 9 * (8 + idx) + solver_bytes(B.shape[0], columns)
    return need <= CSR_MEMORY_SHARE * memory_limit()


def block_rows(B, a: int, b: int):
    """Block rows a..b-1 of a BSR matrix as a BSR matrix sharing B's arrays (no copy)."""
    p0, p1 = int(B.indptr[a]), int(B.indptr[b])
    return scipy.sparse.bsr_matrix(
        (B.data[p0:p1], B.indices[p0:p1], B.indptr[a : b + 1] - p0), shape=(3 * (b - a), B.shape[1])
    )


def bsr_diagonal_blocks(B) -> np.ndarray:
    """(N, 3, 3) diagonal blocks of a canonical BSR matrix of 3x3 blocks (zero where not stored)."""
    n = B.shape[0] // 3
    D = np.zeros((n, 3, 3))
    for a, b in row_chunks(B):
        p0, p1 = int(B.indptr[a]), int(B.indptr[b])
        rows = np.repeat(np.arange(a, b), np.diff(B.indptr[a : b + 1]))
        hit = np.flatnonzero(B.indices[p0:p1] == rows)
        D[rows[hit]] = B.data[p0 + hit]
    return D


def bsr_abs_row_sum_max(B, s) -> float:
    """max over rows of sum_j |s_i B_ij s_j| (s: (N,) per-atom scale)."""
    best = 0.0
    for a, b in row_chunks(B):
        p0, p1 = int(B.indptr[a]), int(B.indptr[b])
        cnt = np.diff(B.indptr[a : b + 1])
        sums = np.abs(B.data[p0:p1]).sum(axis=2) * s[B.indices[p0:p1], None]  # (blocks, 3)
        starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        nz = cnt > 0
        rows = np.add.reduceat(sums, starts[nz], axis=0) * s[np.arange(a, b)[nz], None]
        best = max(best, float(rows.max(initial=0.0)))
    return best


def bsr_galerkin(B, P) -> np.ndarray:
    """Dense P^T B P for a BSR B of 3x3 blocks and a (3N, m) sparse P, by chunks of block rows
    (B @ P whole would be a (3N, m) sparse temporary of ~27 nodes a row)."""
    P = scipy.sparse.csr_matrix(P)
    Pb = P.tobsr(blocksize=(3, 1))  # scipy's BSR product converts its right operand to this
    out = np.zeros((P.shape[1], P.shape[1]))
    for a, b in row_chunks(B):
        out += (P[3 * a : 3 * b].T @ (block_rows(B, a, b) @ Pb)).toarray()
    return out


PRODUCT_CHUNK_BLOCKS = 1 << 16  # stored blocks per chunk of ``BlockRowProduct`` (its CSR: ~7 MB)


class BlockRowProduct:
    """X -> s (B (s X)) for a canonical BSR B of 3x3 blocks (s = M^-1/2 per component), without
    a copy of B: chunks of ~2^16 blocks of block rows are turned into CSR one at a time and
    multiplied (scipy's CSR product: the same sums in the same order as its BSR one, bit for bit,
    2.4x faster with the conversion included: 0.33 s against 0.77 s for 27 columns at
    N = 13,500), the chunks shared among threads (scipy's sparse routines release the GIL)."""

    def __init__(self, B, masses=None, n_threads=None):
        self.s = None
        if masses is not None and not np.all(masses == 1.0):
            self.s = np.repeat(1.0 / np.sqrt(np.asarray(masses, dtype=np.float64)), 3)[:, None]
        self.B = B
        self.chunks = list(row_chunks(B, PRODUCT_CHUNK_BLOCKS))
        n_threads = n_threads or min(4, os.cpu_count() or 1)
        self.pool = None
        if n_threads > 1 and len(self.chunks) > 1 and B.shape[0] >= PARALLEL_MIN_ROWS:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(n_threads)

    def __call__(self, X, out=None):
        """B's product with X ((3N,) or (3N, b)); ``out``: a C-contiguous float64 (3N, b) array to
        write it into and return (the caller's buffer, reused from call to call: a fresh
        (3N, b) result is first touched page by page, ~0.2 s of system time a product at 10^6
        atoms on this project's VMs). The masses' scaling of X goes into a buffer of this
        object, reused alike."""
        X = np.asarray(X, dtype=np.float64)
        one = X.ndim == 1
        if one:
            X = X[:, None]
        if self.s is not None:
            sx = getattr(self, "_sx", None)
            if sx is None or sx.shape != X.shape:
                sx = self._sx = np.empty(X.shape)
            X = np.multiply(self.s, X, out=sx)
        shape = (self.B.shape[0], X.shape[1])
        if out is None or one:
            Y = np.empty(shape)
        elif out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"BlockRowProduct: out must be a C-contiguous float64 array of shape {shape}")
        else:
            Y = out

        def chunk(ab):
            a, b = ab
            Y[3 * a : 3 * b] = block_rows(self.B, a, b).tocsr() @ X

        if self.pool is None:
            for ab in self.chunks:
                chunk(ab)
        else:
            list(self.pool.map(chunk, self.chunks))
        if self.s is not None:
            Y *= self.s
        return Y[:, 0] if one else Y

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False)


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

    @property
    def product_eps(self) -> float:
        """Machine epsilon of the precision the products are made in (float64 for a matrix)."""
        return float(np.finfo(np.float64).eps)

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

    def coarse_matrix(self, masses, P) -> np.ndarray:
        """Dense P^T A P for a (3N, m) scipy sparse P (the LOBPCG preconditioner's coarse matrix)."""
        A = self.mass_weighted_csr(masses)
        return (P.T @ (A @ P)).toarray()

    def abs_row_sum_max(self, masses) -> float:
        """max_i sum_j |A_ij| (= ||A||_inf, a bound on the spectrum)."""
        return float(abs(self.mass_weighted_csr(masses)).sum(axis=1).max())

    def matmat(self, masses, columns: int = 32):
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
    """A scipy sparse matrix (BSR with (3, 3) blocks from mdhess.hessian, or any other).

    A BSR matrix of 3x3 blocks in canonical form (sorted, unique block indices: mdhess's output)
    is used as it is, never copied whole: the symmetry probe, diagonal blocks, products (block
    rows split over threads, the masses applied to the vectors), the coarse matrix P^T A P and the
    row sums all read its blocks (``self.blocks3``). At 10^6 atoms its blocks are ~6 GB: the CSR
    of the mass-weighted matrix (another ~8 GB plus a scaled copy) is made only where a solver
    needs one (shift-invert, dense).
    """

    def __init__(self, H):
        super().__init__(H)
        self.blocks3 = H if is_canonical_bsr3(H) else None

    def fill(self) -> float:
        return self.H.nnz / float(self.n3) ** 2

    def check_symmetric(self) -> None:
        H = self.H
        if not np.all(np.isfinite(H.data)):
            raise InputError("normal_modes(H=...) has non-finite entries (NaN or inf)")
        C = self.blocks3 if self.blocks3 is not None else H.tocsr()
        x, y = np.random.default_rng(0).standard_normal((2, self.n3))
        hx, hy = C @ x, C @ y
        if abs(float(x @ hy - y @ hx)) <= 1e-12 * float(np.linalg.norm(hx) * np.linalg.norm(y)):
            # a random probe of x.(Hy) - y.(Hx) is zero for symmetric H (and almost surely not otherwise)
            return
        C = H.tocsr()
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

    def diagonal_blocks(self, masses) -> np.ndarray:
        if self.blocks3 is None:
            return super().diagonal_blocks(masses)
        s = 1.0 / np.sqrt(masses)
        return bsr_diagonal_blocks(self.blocks3) * (s * s)[:, None, None]

    def matmat(self, masses, columns: int = 32):
        """X -> A X: on the mass-weighted CSR (scipy's CSR product is ~5x faster than its BSR
        one: 0.20 s against 1.0 s for 27 columns at N = 13,500) unless that CSR would not fit
        beside the solver's ``columns``-wide vectors; then on the blocks in place."""
        if self.blocks3 is None or self._csr is not None or csr_fits(self.blocks3, columns):
            return super().matmat(masses)
        return BlockRowProduct(self.blocks3, masses)

    def coarse_matrix(self, masses, P) -> np.ndarray:
        if self.blocks3 is None:
            return super().coarse_matrix(masses, P)
        return bsr_galerkin(self.blocks3, scipy.sparse.diags(np.repeat(1.0 / np.sqrt(masses), 3)) @ P)

    def abs_row_sum_max(self, masses) -> float:
        if self.blocks3 is None:
            return super().abs_row_sum_max(masses)
        return bsr_abs_row_sum_max(self.blocks3, 1.0 / np.sqrt(masses))


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

    @property
    def product_eps(self) -> float:
        """The operator's own precision (a float32 operator computes its products in float32)."""
        dt = np.dtype(getattr(self.H, "dtype", np.float64))
        return float(np.finfo(dt).eps) if dt.kind == "f" else float(np.finfo(np.float64).eps)

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
        # the operator's own rounding: 1e-10 for float64 (measured ~1e-16), 1000 eps for a
        # float32 operator (measured ~4e-9; an asymmetry from a wrong operator is of order 1)
        eps = np.finfo(np.dtype(getattr(self.H, "dtype", np.float64))).eps
        if dev > max(1e-10, 1e3 * float(eps)) * scale:
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

    def matmat(self, masses, columns: int = 32):
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

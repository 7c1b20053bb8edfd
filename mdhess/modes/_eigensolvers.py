"""Partial symmetric eigensolvers for mass-weighted Hessians: LOBPCG with deflation and a
two-level (block-Jacobi + coarse displacement field) preconditioner.

Why not scipy's ``lobpcg``: it recomputes products it could reuse, cannot soft-lock converged
columns, and stagnates far above 1e-8 eigenvalue accuracy on crystal Hessians (measured 6e-4 on
the N = 8788 argon benchmark). The version here is the textbook method of Knyazev, SIAM J. Sci.
Comput. 23, 517 (2001), with the SVQB orthonormalisation of Duersch, Shao, Yang and Gu, SIAM J.
Sci. Comput. 40, C655 (2018), soft locking, and hard deflation of known null vectors (rigid-body
modes) passed as constraints.

Preconditioner. The lowest modes of a solid or a network are long-wavelength: locally a rigid
translation that varies smoothly in space. A two-level preconditioner captures exactly that:

    T r = D^-1 r + P (P^T A P)^+ P^T r

with D the 3x3 diagonal blocks of A (block Jacobi, damps the short-wavelength error) and P the
trilinear interpolation of a displacement field on a coarse grid (needs positions; without them
block Jacobi alone is used). On sparse matrices (few entries per row: elastic networks) the
symmetric multiplicative form trades cheap sparse products for fewer iterations: Chebyshev
smoothing (block-Jacobi preconditioned, float32) before and after the coarse correction, and
coarse nodes that rotate as well as translate. Measured: the lowest 17 vibrational modes of the
N = 8788 argon crystal in 29 iterations; 20 modes of an N = 2048 elastic network in 14 (56 with
the additive form, 23 with two damped-Jacobi sweeps, 19 with rotating nodes).
"""

import itertools
import os
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse

ATOMS_PER_NODE = 20  # coarse grid of the two-level preconditioner: atoms per node (target)
MAX_COARSE_NODES = 1000  # dense coarse factor up to 3000 x 3000
SMOOTH = 3  # Chebyshev smoothing steps before and after the coarse correction, on sparse matrices
CHEB_RATIO = 20.0  # ... damping D^-1 A's spectrum in [rho / CHEB_RATIO, rho]
SMOOTH_MAX_PER_ROW = 120  # ... with at most this many stored entries per row
REORTH_KEEP = 0.5  # LOBPCG: a second Gram-Schmidt pass for columns that kept less of their norm
BUFFER_MIN = 10  # extra LOBPCG columns beyond the wanted ones (at least)
PARALLEL_MIN_ROWS = 20000  # sparse products split over threads from this many rows


# -- dense helpers ------------------------------------------------------------------------------
def _svqb(U, AU=None, drop: float = 1e-10):
    """Orthonormalise the columns of U (dropping near-dependent ones); apply the same map to AU."""
    if U.shape[1] == 0:
        return U, AU
    G = U.T @ U
    d = np.sqrt(np.maximum(np.diag(G), 1e-300))
    G = G / d[:, None] / d[None, :]
    g, V = np.linalg.eigh((G + G.T) / 2)
    keep = g > drop * g.max()
    C = (V[:, keep] / np.sqrt(g[keep])) / d[:, None]
    return U @ C, (None if AU is None else AU @ C)


def _project_out(U, Y):
    if Y is None or Y.shape[1] == 0:
        return U
    return U - Y @ (Y.T @ U)


@dataclass
class LobpcgInfo:
    iterations: int
    matvecs: int
    converged: int
    residuals: np.ndarray


def lobpcg(matmat, X0, k: int, *, Y=None, precond=None, tol: float = 1e-8, maxiter: int = 500, anorm=None):
    """Lowest ``k`` eigenpairs of a symmetric A restricted to the complement of span(Y).

    Args:
        matmat: function (n, b) -> (n, b), A @ X in float64.
        X0: (n, b) initial block, b >= k (the b - k extra columns buffer the gap of the k-th pair).
        k: wanted pairs (the first k Ritz pairs must converge).
        Y: (n, c) orthonormal constraint vectors (deflated null space), or None: the pairs are those
            of Q A Q, Q = I - Y Y^T (the same as A's when span(Y) is invariant under A).
        precond: function (n, a) -> (n, a) approximating A^+ (or None).
        tol: relative eigenvalue accuracy. Pair i is converged when
            ||A x_i - theta_i x_i||^2 / gap_i <= tol * max(|theta_i|, 1e-6 anorm), gap_i being the
            distance from theta_i to the top Ritz value of the block (the first-order-free bound
            of Kato and Temple on the eigenvalue error), and its relative residual is below
            sqrt(tol) (so the vectors are good to about sqrt(tol) / relative gap as well).
        maxiter: iteration limit.
        anorm: scale of ||A|| for the near-zero guard (estimated from the Ritz values if None).

    Returns:
        (w (k,), X (n, k), LobpcgInfo). Columns that did not converge are returned as they are;
        ``info.converged`` counts those that did.
    """
    X = _project_out(np.asarray(X0, dtype=np.float64), Y)
    X, _ = _svqb(X)
    b = X.shape[1]
    if b < k:
        raise ValueError(f"lobpcg: initial block has rank {b} < k = {k}")
    AX = matmat(X)
    nmv = b
    H = X.T @ AX
    w, V = np.linalg.eigh((H + H.T) / 2)
    X, AX = X @ V, AX @ V
    scale = float(np.abs(w).max()) if anorm is None else float(anorm)
    P = AP = None
    it = 0
    attainable = 1e3 * np.finfo(np.float64).eps * max(scale, 1e-300) * np.sqrt(X.shape[0])

    def residuals(X, AX, w):
        # the residual of the constrained problem, i.e. of Q A Q with Q = I - Y Y^T: X is
        # orthogonal to Y but A X need not be (rotations are null vectors of a Hessian only
        # at a stationary point); unprojected, that component never converges
        R = _project_out(AX - X * w, Y)
        rn = np.linalg.norm(R, axis=0)
        floor = np.maximum(np.abs(w), 1e-6 * max(scale, 1e-300))
        gap = np.maximum(w[-1] - w, 1e-3 * floor) if b > k else np.full(b, 1e-3) * floor
        ok = (rn**2 / gap <= tol * floor) & (rn <= np.sqrt(tol) * floor)
        ok |= rn <= attainable  # rounding level of A X: nothing better is computable
        return R, rn / floor, ok

    for it in range(1, maxiter + 1):
        if it % 10 == 0:  # restore orthonormality lost to rounding, then re-diagonalise
            X, AX = _svqb(X, AX)
            if X.shape[1] < b:
                break
            H = X.T @ AX
            w, V = np.linalg.eigh((H + H.T) / 2)
            X, AX = X @ V, AX @ V
        R, res, ok = residuals(X, AX, w)
        if ok[:k].all():
            break
        # soft locking: converged wanted columns stop receiving search directions; the extra
        # columns (k..b) always do, they buffer the gap of the k-th pair
        active = np.concatenate([~ok[:k], np.ones(b - k, bool)])
        W = R[:, active]
        if precond is not None:
            W = precond(W)
        W = _project_out(W, Y)
        a = W.shape[1]
        # search space [X, Q], Q = [W, P] made orthonormal and orthogonal to X. W and P are handled
        # as one block: fewer, wider products than separate passes (15 instead of 28 n x b
        # products per iteration); A P follows every linear map applied to P
        Q = W if P is None else np.concatenate([W, P], axis=1)
        # classical Gram-Schmidt against X, a second pass only for the columns that kept less than
        # REORTH_KEEP of their norm (the criterion of Daniel, Gragg, Kaufman and Stewart: only those
        # carry first-pass rounding above eps; twice is enough, Giraud et al. 2005). Measured: 2 of
        # 24 iterations need it (argon), the pass costs as much as the rest of this step
        sq0 = np.einsum("ij,ij->j", Q, Q)
        c = X.T @ Q
        Q -= X @ c
        if P is not None:
            AP -= AX @ c[:, a:]
        redo = np.flatnonzero(np.einsum("ij,ij->j", Q, Q) < REORTH_KEEP**2 * sq0)
        if redo.size:
            Qr = Q[:, redo]
            c = X.T @ Qr
            Q[:, redo] = Qr - X @ c
            p = redo >= a
            if P is not None and p.any():
                AP[:, redo[p] - a] -= AX @ c[:, p]
        AQ = matmat(Q[:, :a])
        nmv += a
        if P is not None:
            AQ = np.concatenate([AQ, AP], axis=1)
        Q, AQ = _svqb(Q, AQ)
        if Q.shape[1] == 0:
            break
        # Rayleigh-Ritz on [X, Q] (orthonormal by construction: Gram = I to rounding). Folding the
        # SVQB map into these small matrices instead of applying it to Q and AQ saves two
        # products but diverged at tol=1e-13 (tiny W columns scaled up by the map): not done.
        XAQ = X.T @ AQ
        QAQ = Q.T @ AQ
        Hs = np.block([[np.diag(w), XAQ], [XAQ.T, QAQ]])
        ws, C = np.linalg.eigh((Hs + Hs.T) / 2)
        C = C[:, :b]
        w = ws[:b]
        Cx, Cq = C[:b], C[b:]
        P, AP = Q @ Cq, AQ @ Cq
        X = X @ Cx + P
        AX = AX @ Cx + AP
    R, res, ok = residuals(X, AX, w)
    return w[:k], X[:, :k], LobpcgInfo(it, nmv, int(np.sum(ok[:k])), res[:k])


# -- preconditioners ----------------------------------------------------------------------------
def bsr_diagonal_blocks(A: scipy.sparse.bsr_matrix) -> np.ndarray:
    """(N, 3, 3) diagonal blocks of a (3N, 3N) BSR matrix with blocksize (3, 3)."""
    n = A.shape[0] // 3
    indptr, ind = A.indptr, A.indices
    rows = np.repeat(np.arange(n), np.diff(indptr))
    hit = np.flatnonzero(ind == rows)
    D = np.zeros((n, 3, 3))
    D[rows[hit]] = A.data[hit]
    return D


def block_jacobi(D: np.ndarray, dtype=np.float64):
    """Function R (3N, a) -> D^-1 R for (N, 3, 3) blocks (pseudo-inverse where singular)."""
    n = D.shape[0]
    Dinv = np.linalg.pinv(D, rcond=1e-12, hermitian=True).astype(dtype)

    def apply(R):
        return np.matmul(Dinv, R.reshape(n, 3, -1)).reshape(R.shape)

    return apply


def trilinear_prolongator(positions, cell, sqrt_m, spacing: float, rotations: bool = True):
    """(3N, n_coarse) sparse P: atom displacement = trilinear interpolation of a coarse-grid
    displacement field, in mass-weighted coordinates (row 3i+a scaled by sqrt(m_i)).

    Periodic cells use a periodic grid in fractional coordinates; free space a grid over the
    bounding box, dropping nodes that carry less than half an atom's weight. With ``rotations``
    every node also carries three infinitesimal rotations about itself (atom i moves by
    w_ic omega x (r_i - x_c)), so the coarse space holds locally rigid motions, not only locally
    uniform translations (elastic network N = 2048: 19 instead of 23 LOBPCG iterations).
    """
    R = np.asarray(positions, dtype=np.float64)
    n = R.shape[0]
    if cell is not None:
        widths = np.linalg.norm(cell, axis=1)
        ng = np.maximum(2, np.round(widths / spacing)).astype(int)
        f = (R @ np.linalg.inv(cell)) % 1.0
        x = f * ng
        periodic = True
    else:
        lo = R.min(axis=0)
        ext = R.max(axis=0) - lo
        ng = np.maximum(1, np.ceil(ext / spacing)).astype(int) + 1
        h = np.where(ng > 1, ext / np.maximum(ng - 1, 1), 1.0)
        x = (R - lo) / h
        x = np.minimum(x, ng - 1 - 1e-12)
        periodic = False
    i0 = np.floor(x).astype(np.int64)
    t = x - i0
    nd = 6 if rotations else 3
    nn = int(np.prod(ng))
    atoms = 3 * np.arange(n)
    weight = np.zeros(nn)  # interpolation weight each node carries
    rows, cols, vals = [], [], []
    for d in itertools.product((0, 1), repeat=3):
        d = np.array(d)
        w = np.prod(np.where(d, t, 1.0 - t), axis=1)
        idx = i0 + d
        idx = idx % ng if periodic else np.minimum(idx, ng - 1)
        node = (idx[:, 0] * ng[1] + idx[:, 1]) * ng[2] + idx[:, 2]
        np.add.at(weight, node, w)
        for a in range(3):
            rows.append(atoms + a)
            cols.append(nd * node + a)
            vals.append(w * sqrt_m)
        if rotations:  # atom minus node, Cartesian (no wrap needed: |t - d| < 1 grid cell)
            rel = ((t - d) / ng) @ cell if periodic else (t - d) * h
            for b in range(3):  # (e_b x rel) has rel[b+2] at b+1 with a minus sign, rel[b+1] at b+2
                a1, a2 = (b + 1) % 3, (b + 2) % 3
                rows += [atoms + a1, atoms + a2]
                cols += [nd * node + 3 + b] * 2
                vals += [-w * sqrt_m * rel[:, a2], w * sqrt_m * rel[:, a1]]
    P = scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(3 * n, nd * nn)
    )
    # nodes carrying less than half an atom's weight make the coarse matrix ill-conditioned
    keep = np.repeat(weight >= 0.5, nd)
    return P[:, np.flatnonzero(keep)].tocsr()


class IndefiniteError(np.linalg.LinAlgError):
    """The matrix a preconditioner was built from has negative eigenvalues."""


def blocks_indefinite(D) -> bool:
    """True when a 3x3 diagonal block has a negative eigenvalue (beyond rounding): then A has
    one too (a principal submatrix of a positive semidefinite matrix is positive semidefinite)."""
    w = np.linalg.eigvalsh(D)
    return bool(w.min() < -1e-10 * max(float(np.abs(w).max()), 1e-300))


def shift_below_spectrum(matmat, n: int, seed: int = 0, norm_bound=None) -> float:
    """sigma below the lowest eigenvalue of A: 1.1 x a Lanczos estimate of it (ARPACK, relative
    accuracy 1e-2, so the 10% margin holds). If ARPACK does not converge: -norm_bound (an upper
    bound of ||A||_2, e.g. the largest absolute row sum), or -1.5 x a power-iteration estimate.
    Returns 0.0 when A has no negative eigenvalue."""
    import scipy.sparse.linalg as sla

    op = sla.LinearOperator((n, n), matvec=lambda x: matmat(x.reshape(-1, 1)).ravel(), dtype=np.float64)
    rng = np.random.default_rng(seed)
    try:
        v0 = rng.standard_normal(n)
        lam = float(sla.eigsh(op, k=1, which="SA", tol=1e-2, v0=v0, return_eigenvectors=False)[0])
    except sla.ArpackNoConvergence:
        if norm_bound is None:
            x = rng.standard_normal(n)
            for _ in range(30):
                y = op.matvec(x)
                norm_bound = 1.5 * float(np.linalg.norm(y) / np.linalg.norm(x))
                x = y / np.linalg.norm(y)
        return -float(norm_bound)
    return 1.1 * lam if lam < 0 else 0.0


class TwoLevel:
    """Two-level preconditioner: block Jacobi D^-1 plus a coarse correction P Ac^-1 P^T, Ac = P^T A P.

    Additive form (``smooth=0``): T r = D^-1 r + P Ac^-1 P^T r. Multiplicative form (``smooth``
    steps of a block-Jacobi-preconditioned Chebyshev smoother before and after the coarse
    correction, the same polynomial both sides so T stays symmetric): the smoothing runs in
    float32 on a scaled copy of A. A preconditioner only shapes the search directions (LOBPCG's
    Rayleigh-Ritz uses A in float64), so single precision there costs no accuracy; it cuts the
    memory traffic of the sparse products that dominate the cycle (1.5 instead of 2.2 ms for 30
    vectors, N = 2048 network).

    Ac is factorised by Cholesky after a tiny diagonal shift (1e-8 of its largest diagonal entry)
    that makes the coarse rigid-body null space invertible; those directions are the deflated
    constraints and are projected out of T r by the caller. Where Ac is indefinite (a saddle
    point) the factor is |Ac|^+ from its eigendecomposition instead, or, with
    ``indefinite_ok=False``, IndefiniteError is raised (the LOBPCG driver then rebuilds the
    preconditioner from A - sigma I, sigma below the spectrum).
    """

    def __init__(self, A, D, P, smooth: int = 0, seed: int = 0, indefinite_ok: bool = True):
        self.smooth = smooth
        self.P = P
        self.PT = P.T.tocsr()
        Ac = (self.PT @ (A @ P)).toarray()
        self.Ac = Ac = (Ac + Ac.T) / 2
        self.chol = self.chol32 = None
        if smooth:
            # the cycle works on A / s in float32 (s = largest |entry|: no overflow for any units)
            self.s = float(abs(A).max()) or 1.0
            self.A32 = (A / self.s).astype(np.float32).tocsr()
            self.matmat = self.A32.__matmul__  # threads measured slower here: the products are ~1 ms
            self.jacobi32 = block_jacobi(D / self.s, dtype=np.float32)
            # the smoother's interval [b / CHEB_RATIO, b] needs b >= rho(D^-1 A): power iteration
            # (12 steps approach it from below) plus a 10% margin
            x = np.random.default_rng(seed).standard_normal((A.shape[0], 1)).astype(np.float32)
            rho = 1.0
            for _ in range(12):
                y = self.jacobi32(self.matmat(x))
                rho = float(np.linalg.norm(y) / np.linalg.norm(x))
                x = y / np.linalg.norm(y)
            self.b = 1.1 * rho
            # the coarse problem of A / s in float32 too: the shift is 1e-5 of the largest diagonal
            # entry (float32 has 7 digits; the rigid directions it regularises are deflated by the
            # caller, and the softest coarse modes sit ~1e-2 of it and up)
            self.P32, self.PT32 = P.astype(np.float32), self.PT.astype(np.float32)
            Acs = Ac / self.s
            shift32 = 1e-5 * max(float(np.diag(Acs).max()), 1e-300)
            try:
                self.chol32 = scipy.linalg.cho_factor(
                    (Acs + shift32 * np.eye(len(Acs))).astype(np.float32), lower=True, check_finite=False
                )
            except np.linalg.LinAlgError:  # indefinite (a saddle point): |Ac|^+ in float64 below
                pass
        else:
            self.jacobi = block_jacobi(D)
        if self.chol32 is None:  # float64 coarse factor: additive form, or the float32 one failed
            shift = 1e-8 * max(float(np.diag(Ac).max()), 1e-300)
            try:
                shifted = Ac + shift * np.eye(len(Ac))
                self.chol = scipy.linalg.cho_factor(shifted, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                if not indefinite_ok:
                    raise IndefiniteError("the coarse matrix P^T A P is indefinite") from None
                wc, Vc = np.linalg.eigh(Ac)
                keep = np.abs(wc) > 1e-10 * max(np.abs(wc).max(), 1e-300)
                self.Vc, self.inv = Vc[:, keep], 1.0 / np.abs(wc[keep])

    def coarse_solve(self, c):
        if self.chol is not None:
            return scipy.linalg.cho_solve(self.chol, c, check_finite=False)
        return self.Vc @ (self.inv[:, None] * (self.Vc.T @ c))

    def __call__(self, R):
        if not self.smooth:
            return self.jacobi(R) + self.P @ self.coarse_solve(self.PT @ R)
        # symmetric multiplicative cycle, in float32 on columns scaled to unit max (no underflow)
        c = np.abs(R).max(axis=0)
        c[c == 0] = 1.0
        r = (R / c).astype(np.float32)
        x = self._chebyshev(r, None)
        res = r - self.matmat(x)
        if self.chol32 is not None:  # the coarse problem of A / s, like the smoothing
            x += self.P32 @ scipy.linalg.cho_solve(self.chol32, self.PT32 @ res, check_finite=False)
        else:  # of A (float64), hence the factor s
            x += (self.P @ self.coarse_solve((self.PT @ res.astype(np.float64)) * self.s)).astype(np.float32)
        x = self._chebyshev(r, x)
        return x.astype(np.float64) * (c / self.s)

    def _chebyshev(self, r, x):
        """``smooth`` steps of the Chebyshev iteration for A x = r preconditioned by D, tuned to damp
        the eigenvalues of D^-1 A in [b / CHEB_RATIO, b] (the high end: the coarse grid takes the
        low end). Same products per sweep as damped block Jacobi, fewer LOBPCG iterations (N = 2048
        network: 14 instead of 19 at 3 sweeps). Starts from x = 0 when ``x`` is None."""
        J, mm = self.jacobi32, self.matmat
        b = self.b
        a = b / CHEB_RATIO
        theta, delta = (b + a) / 2, (b - a) / 2
        sigma = theta / delta
        rho = 1.0 / sigma
        res = r if x is None else r - mm(x)
        d = J(res) / np.float32(theta)
        x = d.copy() if x is None else x + d
        for _ in range(1, self.smooth):
            res = res - mm(d)
            rho_new = 1.0 / (2 * sigma - rho)
            d = np.float32(rho_new * rho) * d + np.float32(2 * rho_new / delta) * J(res)
            rho = rho_new
            x += d
        return x


# -- mass-weighted operators ----------------------------------------------------------------------
def mass_weighted_sparse(H, s_atom):
    """CSR of M^-1/2 H M^-1/2 for sparse H (BSR blocks scaled per atom pair, no densification)."""
    if isinstance(H, scipy.sparse.bsr_matrix) and H.blocksize == (3, 3):
        B = H.copy()
        rows = np.repeat(np.arange(B.shape[0] // 3), np.diff(B.indptr))
        B.data = B.data * (s_atom[rows] * s_atom[B.indices])[:, None, None]
        return B.tocsr(), B
    s = np.repeat(s_atom, 3)
    C = H.tocsr().astype(np.float64)
    C = scipy.sparse.diags(s) @ C @ scipy.sparse.diags(s)
    return C.tocsr(), None


def _csr_diagonal_blocks(A):
    """(N, 3, 3) diagonal blocks of a (3N, 3N) CSR matrix."""
    n = A.shape[0] // 3
    D = np.zeros((n, 3, 3))
    for a in range(3):
        for b in range(3):
            D[:, a, b] = A.diagonal(b - a)[np.arange(n) * 3 + min(a, b)]
    return D


class _ParallelCSR:
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


def operator_blocks_csr(op):
    """Transient BSR of a HessianOperator's blocks (for the preconditioner setup only)."""
    return op.to_bsr()


# -- solvers --------------------------------------------------------------------------------------
def solve_dense(A, Y, kv, which):
    n = A.shape[0]
    c = Y.shape[1]
    if c:
        # (I - YY^T) A (I - YY^T) + beta YY^T: the projection, with the rigid directions moved above
        # the spectrum (beta = 2 ||A||_inf >= 2 ||A||_2, in the matrix's units), written as ONE
        # symmetric rank-2c update A - Y Z^T - Z Y^T with Z = AY - Y (Y^T A Y) / 2 - beta Y / 2
        # (fewer n x n temporaries and passes: 10 ms instead of 27 ms at n = 1536, measured)
        beta = 2.0 * float(np.abs(A).sum(axis=1).max())
        beta = beta if beta > 0 else 1.0
        F = A @ Y
        M = Y.T @ F
        Z = F - Y @ ((M + M.T) / 4) - (beta / 2) * Y
        A = A - np.hstack([Y, Z]) @ np.hstack([Z, Y]).T
    nv = n - c
    if kv == 0:
        return np.zeros(0), np.zeros((n, 0))
    lo, hi = (0, kv - 1) if which == "lowest" else (nv - kv, nv - 1)
    if kv == nv and c == 0:
        w, V = scipy.linalg.eigh(A, check_finite=False)
    else:
        w, V = scipy.linalg.eigh(A, subset_by_index=[lo, hi], check_finite=False, driver="evr")
    return w, V


def _coarse_spacing(R, cell, n_atoms):
    vol = abs(np.linalg.det(cell)) if cell is not None else float(np.prod(np.ptp(R, axis=0).clip(1e-12)))
    nodes = min(max(n_atoms / ATOMS_PER_NODE, 8), MAX_COARSE_NODES)
    return (vol / nodes) ** (1.0 / 3.0)


def _blas_single_thread():
    """LOBPCG's dense work is many small products: threaded BLAS only adds synchronisation (9x
    slower measured on a loaded 2-core machine), and the sparse products are threaded by rows."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own setting
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def solve_lobpcg(*args):
    with _blas_single_thread():
        return _solve_lobpcg_impl(*args)


def _solve_lobpcg_impl(kind, H, A_csr, s_atom, Y, kv, which, positions, cell, tol, maxiter, seed):
    n = 3 * s_atom.size
    s = np.repeat(s_atom, 3)
    info = {}
    if kind == "operator":
        op = H

        def matmat(X):
            return s[:, None] * np.asarray(op @ (s[:, None] * X))

        if positions is None:
            positions = op.positions
    else:
        matmat = _ParallelCSR(A_csr)
    precond = None
    if which == "lowest":
        if kind == "operator":
            A_pre = mass_weighted_sparse(operator_blocks_csr(H), s_atom)[0] if positions is not None else None
            if A_pre is None:
                D = np.asarray(H.diagonal_blocks())
                D = D * (s_atom[:, None, None] ** 2)
        else:
            A_pre = A_csr
        if A_pre is not None:
            D = _csr_diagonal_blocks(A_pre)
        if positions is not None:
            # smoothing steps cost sparse products and save iterations (dense block work): they pay
            # off on sparse Hessians (elastic networks, ~60 entries per row: 14 instead of 56
            # iterations) but not on dense-ish ones (LJ at 2.5 sigma, ~240 per row).
            # Sparse ones are floppy (hinges, loops): their coarse nodes also rotate.
            per_row = A_pre.nnz / A_pre.shape[0]
            smooth = SMOOTH if per_row <= SMOOTH_MAX_PER_ROW else 0
            nd = 6 if smooth else 3
            spacing = _coarse_spacing(positions, cell, s_atom.size)
            P = trilinear_prolongator(positions, cell, 1.0 / s_atom, spacing, rotations=nd == 6)

        def build(shift, indefinite_ok):
            """The preconditioner of A - shift I (shift < 0 below the spectrum: then SPD)."""
            Ds = D - shift * np.eye(3) if shift else D
            if positions is None:
                return block_jacobi(Ds)
            As = (A_pre - shift * scipy.sparse.identity(n, format="csr")).tocsr() if shift else A_pre
            return TwoLevel(As, Ds, P, smooth=smooth, seed=seed, indefinite_ok=indefinite_ok)

        def below_spectrum():
            bound = float(abs(A_pre).sum(axis=1).max()) if A_pre is not None else None  # ||A||_inf
            return shift_below_spectrum(matmat, n, seed, bound)

        # A preconditioner for the lowest pairs must be positive definite. A saddle point's Hessian
        # is not, and neither are its block-Jacobi or coarse parts when a 3x3 diagonal block or
        # P^T A P has a negative eigenvalue (pinv of an indefinite block: LOBPCG then stalls, 0 of
        # 20 pairs in 1000 iterations measured). Those are built from A - sigma I instead, sigma
        # below the lowest eigenvalue (a Lanczos estimate): positive definite, and near sigma
        # where the wanted pairs are.
        shift = below_spectrum() if blocks_indefinite(D) else 0.0
        try:
            precond = build(shift, indefinite_ok=bool(shift))
        except IndefiniteError:
            shift = below_spectrum()
            # (if the estimate finds nothing negative, the coarse factor falls back to |Ac|^+)
            precond = build(shift, indefinite_ok=True)
        if positions is not None:
            info["preconditioner"] = (
                f"two-level (block Jacobi + {P.shape[1] // nd}-node trilinear coarse grid"
                + (", rotating nodes" if nd == 6 else "")
                + (f", {smooth} float32 Chebyshev smoothing steps)" if smooth else ", additive)")
            )
        else:
            info["preconditioner"] = "block Jacobi (pass positions= for the two-level preconditioner)"
        if shift:
            info["preconditioner"] += f", of A - sigma I with sigma = {shift:.6g} (indefinite matrix)"
        mm = matmat
    else:
        info["preconditioner"] = "none"

        def mm(X):
            return -matmat(X)

    b = min(kv + max(BUFFER_MIN, kv // 4), n - Y.shape[1])
    X0 = np.random.default_rng(seed).standard_normal((n, b))
    try:
        w, X, li = lobpcg(mm, X0, kv, Y=Y, precond=precond, tol=tol, maxiter=maxiter)
    finally:
        if isinstance(matmat, _ParallelCSR):
            matmat.close()
    if which == "highest":
        w = -w[::-1]
        X = X[:, ::-1]
    info.update(
        iterations=li.iterations,
        matvecs=li.matvecs,
        converged=li.converged,
        max_residual=float(li.residuals.max()),
    )
    if li.converged < kv:
        warnings.warn(
            f"normal_modes: LOBPCG converged {li.converged} of {kv} modes in {li.iterations} iterations "
            f"(largest relative residual {li.residuals.max():.2g}); raise maxiter or loosen tol",
            RuntimeWarning,
            stacklevel=3,
        )
    return w, X, info

"""LOBPCG for the lowest (or highest) pairs of a mass-weighted Hessian, with deflation of the
rigid-body directions, and its driver for ``normal_modes``.

Why not scipy's ``lobpcg``: it recomputes products it could reuse, cannot soft-lock converged
columns, and stagnates far above 1e-8 eigenvalue accuracy on crystal Hessians (docs/benchmarks.md,
"Normal modes"). The version here is the textbook method of Knyazev, SIAM J. Sci. Comput. 23, 517
(2001), with the SVQB orthonormalisation of Duersch, Shao, Yang and Gu, SIAM J. Sci. Comput. 40,
C655 (2018), soft locking, and hard deflation of known null vectors (rigid-body modes) passed as
constraints. Its preconditioners are in mdhess/modes/_precond.py.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from .._progress import Status
from ._precond import lowest_preconditioner
from ._rigid import project_out

REORTH_KEEP = 0.5  # LOBPCG: a second Gram-Schmidt pass for columns that kept less of their norm
BUFFER_MIN = 10  # extra LOBPCG columns beyond the wanted ones (at least)


def solver_columns(kv: int) -> int:
    """Columns of the LOBPCG block for ``kv`` wanted pairs (the wanted ones and their buffer)."""
    return kv + max(BUFFER_MIN, kv // 4)


# -- the algorithm ------------------------------------------------------------------------------
def svqb(U, AU=None, drop: float = 1e-10):
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


@dataclass
class LobpcgInfo:
    iterations: int
    matvecs: int
    converged: int
    residuals: np.ndarray


PRODUCT_NOISE = 5.0
"""||fl(A x) - A x|| / (eps scale) measured for unit x and a float32 mdhess operator against its
float64 twin (LJ fcc, N = 108 and 2048: 4.0 and 5.0; scale the largest eigenvalue)."""
RESIDUAL_MARGIN = 50.0
"""Residual norms within this many times the product's noise count as converged (as the float32
phase of precision="mixed" does: _jax_lobpcg.NOISE_MARGIN); below it they only wander."""


def attainable_residual(scale: float, n: int, product_eps: float | None = None) -> float:
    """The residual norm below which nothing better is computable: float64 rounding of A X
    (1e3 eps sqrt(n) scale), or, for products made in a lower precision (a float32 operator:
    ``product_eps`` its eps), RESIDUAL_MARGIN times their noise, whichever is larger."""
    scale = max(float(scale), 1e-300)
    floor = 1e3 * np.finfo(np.float64).eps * scale * np.sqrt(n)
    if product_eps is not None and product_eps > np.finfo(np.float64).eps:
        floor = max(floor, RESIDUAL_MARGIN * PRODUCT_NOISE * float(product_eps) * scale)
    return floor


def lobpcg(matmat, X0, k: int, *, Y=None, precond=None, tol: float = 1e-8, maxiter: int = 500, anorm=None,
           callback=None, product_eps=None):
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
        callback: called as ``callback(iteration, converged, largest relative residual)`` after
            each iteration's convergence test (progress), or None.
        product_eps: None (float64 products), or the eps of the precision ``matmat`` computes
            in (a float32 operator): residuals at its noise count as converged
            (``attainable_residual``).

    Returns:
        (w (k,), X (n, k), LobpcgInfo). Columns that did not converge are returned as they are;
        ``info.converged`` counts those that did.
    """
    X = project_out(np.asarray(X0, dtype=np.float64), Y)
    X, _ = svqb(X)
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
    attainable = attainable_residual(scale, X.shape[0], product_eps)

    def residuals(X, AX, w):
        # the residual of the constrained problem, i.e. of Q A Q with Q = I - Y Y^T: X is
        # orthogonal to Y but A X need not be (rotations are null vectors of a Hessian only
        # at a stationary point); unprojected, that component never converges
        R = project_out(AX - X * w, Y)
        rn = np.linalg.norm(R, axis=0)
        floor = np.maximum(np.abs(w), 1e-6 * max(scale, 1e-300))
        gap = np.maximum(w[-1] - w, 1e-3 * floor) if b > k else np.full(b, 1e-3) * floor
        ok = (rn**2 / gap <= tol * floor) & (rn <= np.sqrt(tol) * floor)
        ok |= rn <= attainable  # rounding level of A X: nothing better is computable
        return R, rn / floor, ok

    for it in range(1, maxiter + 1):
        if it % 10 == 0:  # restore orthonormality lost to rounding, then re-diagonalise
            X, AX = svqb(X, AX)
            if X.shape[1] < b:
                break
            H = X.T @ AX
            w, V = np.linalg.eigh((H + H.T) / 2)
            X, AX = X @ V, AX @ V
        R, res, ok = residuals(X, AX, w)
        if callback is not None:
            callback(it, int(np.sum(ok[:k])), float(res[:k].max()))
        if ok[:k].all():
            break
        # soft locking: converged wanted columns stop receiving search directions; the extra
        # columns (k..b) always do, they buffer the gap of the k-th pair
        active = np.concatenate([~ok[:k], np.ones(b - k, bool)])
        W = R[:, active]
        if precond is not None:
            W = precond(W)
        W = project_out(W, Y)
        a = W.shape[1]
        # search space [X, Q], Q = [W, P] made orthonormal and orthogonal to X. W and P are handled
        # as one block: fewer, wider products than separate passes (15 instead of 28 n x b
        # products per iteration); A P follows every linear map applied to P
        Q = W if P is None else np.concatenate([W, P], axis=1)
        # classical Gram-Schmidt against X, a second pass only for the columns that kept less than
        # REORTH_KEEP of their norm (the criterion of Daniel, Gragg, Kaufman and Stewart: only those
        # carry first-pass rounding above eps; twice is enough, Giraud et al. 2005); how often, and
        # what it costs: docs/benchmarks.md
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
        Q, AQ = svqb(Q, AQ)
        if Q.shape[1] == 0:
            break
        # Rayleigh-Ritz on [X, Q] (orthonormal by construction: Gram = I to rounding). Folding the
        # SVQB map into these small matrices instead of applying it to Q and AQ saves two
        # products but diverged at tight tolerances (tiny W columns scaled up by the map; tried:
        # docs/benchmarks.md): not done.
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


# -- the driver ---------------------------------------------------------------------------------
def blas_single_thread():
    """LOBPCG's dense work is many small products: threaded BLAS only adds synchronisation (much
    slower on a loaded machine: docs/benchmarks.md), and the sparse products are threaded by rows."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own setting
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def solve_lobpcg(inp, masses, Y, req, *, kv: int):
    """(w, V, info): the ``kv`` lowest or highest pairs of Q A Q on the complement of Y by LOBPCG.

    Args:
        inp: the HessianInput (mdhess/modes/_input.py).
        masses: (N,) masses.
        Y: (3N, c) orthonormal rigid-body directions (deflated).
        req: the SolveRequest (which, positions, cell, tol, maxiter, seed).
        kv: pairs wanted.

    The lowest pairs are preconditioned (two-level with positions: the request's, else the
    operator's; block Jacobi without); the highest are those of -A, unpreconditioned. Warns
    (RuntimeWarning) when fewer than ``kv`` pairs converge.
    """
    with blas_single_thread():
        n = inp.n3
        positions = req.positions if req.positions is not None else inp.positions
        info = {}
        if inp.product_eps > np.finfo(np.float64).eps:  # a float32 operator: its products limit the residuals
            info["precision"] = "float32 products (the operator's dtype); residuals down to their rounding"
        b = min(solver_columns(kv), n - Y.shape[1])
        matmat = inp.matmat(masses, b)
        try:
            precond = None
            if req.which == "lowest":
                precond, info["preconditioner"] = lowest_preconditioner(
                    inp, masses, matmat, positions=positions, cell=req.cell, seed=req.seed
                )
                mm = matmat
            else:
                info["preconditioner"] = "none"

                def mm(X):
                    return -matmat(X)

            X0 = np.random.default_rng(req.seed).standard_normal((n, b))
            with Status(req.progress, f"normal_modes (lobpcg, {kv} modes)", total=req.maxiter) as st:

                def callback(it, done, res):
                    st.step(1, f"{done}/{kv} converged, residual {res:.1e}")

                w, X, li = lobpcg(mm, X0, kv, Y=Y, precond=precond, tol=req.tol, maxiter=req.maxiter,
                                  callback=callback if req.progress else None, product_eps=inp.product_eps)  # fmt: skip
        finally:
            close = getattr(matmat, "close", None)
            if close is not None:
                close()
    if req.which == "highest":
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
            stacklevel=5,  # normal_modes' caller: via solve_once, vibrational_modes, normal_modes
        )
    return w, X, info

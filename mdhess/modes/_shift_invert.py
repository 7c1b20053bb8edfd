"""Shift-invert Lanczos for the lowest modes of a sparse mass-weighted Hessian.

K = A - sigma I is factorised once; ARPACK's Lanczos (``scipy.sparse.linalg.eigsh``, mode 3)
then finds the eigenvalues of the projected Q A Q (Q = I - Y Y^T, Y the rigid-body directions)
nearest sigma from products with (Q A Q - sigma I)^-1 on the complement of Y. That inverse is K^-1
plus a rank-2c Woodbury correction (c = Y's columns): Q A Q = A + U C U^T with U = [Y, A Y] and
C = [[Y^T A Y, -I], [-I, 0]], so the pairs are those of Q A Q exactly, as the dense and LOBPCG
solvers give, also where Y is not invariant under A (rotations at a non-stationary structure).

The factor. CHOLMOD's supernodal Cholesky (through cvxopt, the optional ``mdhess[cholmod]``
extra) when K is positive definite, several times faster than SuperLU with its best ordering
(docs/normal-modes.md, "Shift-invert"); otherwise SuperLU (scipy). Cholesky succeeding proves
K positive definite; SuperLU without row pivoting (diagonal pivots, symmetric ordering) gives
K = L D L^T and Sylvester's inertia: the count of eigenvalues below sigma.

Why the inertia matters: shift-invert finds the eigenvalues NEAREST sigma. With the default
sigma just below zero that is "the lowest" only when no eigenvalue lies below sigma; at a saddle
point or an unrelaxed structure the most negative modes would be silently missed. So with the
default sigma, when K is not positive definite (or its inertia is unknown), sigma is moved below
the spectrum (1.1 x an ARPACK estimate of the lowest eigenvalue) and K refactorised. A sigma
given by the caller is kept as it is: the modes nearest it are returned.
"""

import functools
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse

from .._errors import InputError
from .._progress import Status
from ._precond import shift_below_spectrum
from ._rigid import project_out

# Y counts as invariant under A (no Woodbury correction) when ||A Y - Y Y^T A Y||_F <= this x
# sqrt(c), A scaled to a largest diagonal entry of 1: rounding is ~1e-15 there; the leak of a
# residual eps into the complement perturbs the inverted operator by ~eps / (lowest eigenvalue -
# sigma), and the final Rayleigh-Ritz with Q A Q squares what is left
INVARIANT_TOL = 1e-12


@functools.cache
def cholmod_available() -> bool:
    """True when cvxopt (CHOLMOD) can be imported: the optional ``mdhess[cholmod]`` extra. A broken
    install (a shared library that does not load) counts as absent: SuperLU then serves."""
    try:
        import cvxopt.cholmod  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@dataclass
class ShiftFactor:
    """A factor of K = A - sigma I.

    definite: True when K is known positive definite, False when known not to be, None when unknown.
    n_below: the number of eigenvalues of A below sigma (from the inertia), when known.
    """

    solve: object
    backend: str
    definite: object = None
    n_below: object = None


def _factor_cholmod(K):
    import cvxopt
    import cvxopt.cholmod

    n = K.shape[0]
    L = scipy.sparse.tril(K, format="coo")
    M = cvxopt.spmatrix(
        cvxopt.matrix(np.ascontiguousarray(L.data, dtype=np.float64)),
        cvxopt.matrix(L.row.astype(np.int64)),
        cvxopt.matrix(L.col.astype(np.int64)),
        (n, n),
    )
    F = cvxopt.cholmod.symbolic(M, uplo="L")
    cvxopt.cholmod.numeric(M, F)  # ArithmeticError when K is not positive definite

    def solve(b):
        b = np.asarray(b, dtype=np.float64)
        B = cvxopt.matrix(np.array(b.reshape(n, -1), order="F"))
        cvxopt.cholmod.solve(F, B)
        return np.array(B).reshape(b.shape)

    return solve


def _factor_superlu(K, reported_sigma):
    import scipy.sparse.linalg as sla

    Kc = K.tocsc()

    def pivoted():
        try:
            return sla.splu(Kc, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}).solve
        except RuntimeError as e:  # exactly singular: sigma is an eigenvalue
            raise InputError(
                f"normal_modes(sigma={reported_sigma!r}): A - sigma I is singular (sigma is an eigenvalue "
                "of the mass-weighted Hessian); choose another sigma"
            ) from e

    try:  # diagonal pivots only: K = L D L^T up to the symmetric ordering, and its inertia
        lu = sla.splu(Kc, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        if np.array_equal(lu.perm_r, lu.perm_c):
            d = lu.U.diagonal()
            if np.all(np.isfinite(d)) and np.all(d != 0):
                n_below = int(np.count_nonzero(d < 0))
                if n_below == 0:  # positive definite: no pivoting needed for stability
                    return ShiftFactor(lu.solve, "superlu", True, 0)
                # indefinite: the inertia stands, but solves use a pivoted LU (built on first use;
                # the default sigma moves below the spectrum instead and never needs it)
                cache = []

                def solve(b):
                    if not cache:
                        cache.append(pivoted())
                    return cache[0](b)

                return ShiftFactor(solve, "superlu", False, n_below)
    except RuntimeError:  # a zero pivot: factorise with pivoting
        pass
    return ShiftFactor(pivoted(), "superlu")


def factor_shifted(A_csr, sigma: float, *, cholmod=None, reported_sigma=None) -> ShiftFactor:
    """Factor A - sigma I: CHOLMOD Cholesky if available (``cholmod=None``: when importable) and K
    is positive definite, else SuperLU (with the inertia when it can be read off).
    ``reported_sigma``: sigma as the caller knows it (in error messages), if A was rescaled."""
    reported_sigma = sigma if reported_sigma is None else reported_sigma
    n = A_csr.shape[0]
    K = (A_csr - sigma * scipy.sparse.identity(n, format="csr")).tocsr()
    if cholmod is None:
        cholmod = cholmod_available()
    if cholmod:
        try:
            return ShiftFactor(_factor_cholmod(K), "cholmod", True, 0)
        except ArithmeticError:  # not positive definite: some eigenvalue lies below sigma
            f = _factor_superlu(K, reported_sigma)
            f.definite = False
            return f
    return _factor_superlu(K, reported_sigma)


def _projected_inverse(A_csr, Y, f: ShiftFactor):
    """x = Q (Q A Q - sigma I)^-1 Q b by Woodbury: one solve with K per product. Where Y is
    invariant under A (A Y = Y M: translations always, rotations at a stationary point) Q commutes
    with A and the correction vanishes: x = Q K^-1 Q b (saves 2c solves in the setup)."""
    if Y.shape[1] == 0:
        return f.solve
    c = Y.shape[1]
    B = np.asarray(A_csr @ Y)
    M = Y.T @ B
    if np.linalg.norm(B - Y @ M) <= INVARIANT_TOL * np.sqrt(c):  # A is scaled to unit diagonal

        def apply_q(b):
            return project_out(f.solve(project_out(b, Y)), Y)

        apply_q.projection = "commuting"
        return apply_q
    U = np.hstack([Y, B])
    Cinv = np.block([[np.zeros((c, c)), -np.eye(c)], [-np.eye(c), -(M + M.T) / 2]])
    Z = f.solve(U)
    S = scipy.linalg.lu_factor(Cinv + U.T @ Z)

    def apply(b):
        b = project_out(b, Y)
        return project_out(f.solve(b) - Z @ scipy.linalg.lu_solve(S, Z.T @ b), Y)

    apply.projection = "woodbury"
    return apply


def solve_shift_invert(A_csr, Y, kv, which, sigma=None, *, scale=1.0, tol=0.0, seed=0, cholmod=None, progress=False):
    """(w, V, info): kv eigenpairs of Q A Q on the complement of Y, lowest (nearest sigma) or highest.

    The work is on A / scale (scale: the largest |diagonal entry|): ARPACK's convergence test has
    an absolute floor (eps^(2/3) on the Ritz values of the inverted operator), which a matrix in
    units of 1e30 would pass at once (large eigenvalue errors before this scaling:
    docs/normal-modes.md). ``progress``: the factorisation's time and the Lanczos solves on stderr."""
    import scipy.sparse.linalg as sla

    n = A_csr.shape[0]
    A = A_csr * (1.0 / scale) if scale != 1.0 else A_csr
    rng = np.random.default_rng(seed)
    v0 = project_out(rng.standard_normal(n), Y)
    info = {}
    if which == "highest":

        def qaq(x):
            return project_out(np.asarray(A @ project_out(x, Y)), Y)

        _, V = sla.eigsh(
            sla.LinearOperator((n, n), matvec=qaq, dtype=np.float64), k=kv, which="LA", tol=tol, v0=v0
        )
    else:
        given = sigma is not None
        sig = float(sigma) / scale if given else -1e-6

        st = Status(progress, f"normal_modes (shift-invert, {kv} modes)", unit="solve", bar=True)

        def factor(s):
            st.phase(f"factorising A - sigma I (n = {n}, {A.nnz} non-zeros, sigma = {s * scale:.3g})")
            return factor_shifted(A, s, cholmod=cholmod, reported_sigma=s * scale)

        f = factor(sig)
        if not given and f.definite is not True:
            # eigenvalues below sigma (or unknown): move sigma below the spectrum
            est = shift_below_spectrum(lambda X: A @ X, n, seed=seed)
            if est < sig or f.definite is False:
                sig = est if est < sig else 2.0 * sig
                f = factor(sig)
                for _ in range(30):  # the estimate was not below the spectrum: go further down
                    if f.definite is not False:
                        break
                    sig *= 2.0
                    f = factor(sig)
                info["sigma_moved_below_spectrum"] = True
        apply = _projected_inverse(A, Y, f)
        count = [0]

        def matvec(b):
            count[0] += 1
            st.step(1)
            return apply(b)

        opinv = sla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        st.phase("Lanczos (ARPACK)")
        try:
            _, V = sla.eigsh(A, k=kv, sigma=sig, OPinv=opinv, which="LM", tol=tol, v0=v0)
        finally:
            st.close()
        info.update(sigma=float(sigma) if given else sig * scale, factorization=f.backend, solves=count[0])
        if Y.shape[1]:
            info["projection"] = apply.projection
        if f.n_below is not None:
            info["n_below_sigma"] = f.n_below
    # Rayleigh-Ritz with Q A Q on the converged vectors: eigenvalues to rounding of the subspace
    V, _ = np.linalg.qr(project_out(V, Y))
    Hs = V.T @ np.asarray(A @ V)
    w, C = np.linalg.eigh((Hs + Hs.T) / 2)
    return w * scale, V @ C, info

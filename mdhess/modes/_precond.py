"""Preconditioners for LOBPCG on a mass-weighted Hessian A: block Jacobi and a two-level
(block-Jacobi + coarse displacement field) preconditioner, and the shift that keeps them positive
definite on an indefinite A (saddle points, unrelaxed structures).

The lowest modes of a solid or a network are long-wavelength: locally a rigid translation that
varies smoothly in space. A two-level preconditioner captures exactly that:

    T r = D^-1 r + P (P^T A P)^+ P^T r

with D the 3x3 diagonal blocks of A (block Jacobi, damps the short-wavelength error) and P the
trilinear interpolation of a displacement field on a coarse grid (needs positions; without them
block Jacobi alone is used). On sparse matrices (few entries per row: elastic networks) the
symmetric multiplicative form trades cheap sparse products for fewer iterations: Chebyshev
smoothing (block-Jacobi preconditioned, float32) before and after the coarse correction, and
coarse nodes that rotate as well as translate. Iteration counts and timings behind these choices:
docs/benchmarks.md ("Normal modes") and docs/normal-modes.md ("Solvers").
"""

import itertools

import numpy as np
import scipy.linalg
import scipy.sparse

from ._input import csr_diagonal_blocks

ATOMS_PER_NODE = 20  # coarse grid of the two-level preconditioner: atoms per node (target)
MAX_COARSE_NODES = 1000  # dense coarse factor up to 3000 x 3000
SMOOTH = 3  # Chebyshev smoothing steps before and after the coarse correction, on sparse matrices
CHEB_RATIO = 20.0  # ... damping D^-1 A's spectrum in [rho / CHEB_RATIO, rho]
SMOOTH_MAX_PER_ROW = 120  # ... with at most this many stored entries per row


# -- building blocks ----------------------------------------------------------------------------
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
    uniform translations (fewer LOBPCG iterations on networks: docs/benchmarks.md).
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
    memory traffic of the sparse products that dominate the cycle (docs/benchmarks.md).

    Ac is factorised by Cholesky after a tiny diagonal shift (1e-8 of its largest diagonal entry)
    that makes the coarse rigid-body null space invertible; those directions are the deflated
    constraints and are projected out of T r by the caller. Where Ac is indefinite (a saddle
    point) the factor is |Ac|^+ from its eigendecomposition instead, or, with
    ``indefinite_ok=False``, IndefiniteError is raised (the LOBPCG driver then rebuilds the
    preconditioner from A - sigma I, sigma below the spectrum).
    """

    def __init__(self, A, D, P, smooth: int = 0, seed: int = 0, indefinite_ok: bool = True, Ac=None):
        """``Ac``: P^T A P when already made (then A may be None, for ``smooth=0``)."""
        self.smooth = smooth
        self.P = P
        self.PT = P.T.tocsr()
        Ac = (self.PT @ (A @ P)).toarray() if Ac is None else np.array(Ac, dtype=np.float64)
        self.Ac = Ac = (Ac + Ac.T) / 2
        self.chol = self.chol32 = None
        if smooth:
            # the cycle works on A / s in float32 (s = largest |entry|: no overflow for any units)
            self.s = float(abs(A).max()) or 1.0
            self.A32 = (A / self.s).astype(np.float32).tocsr()
            self.matmat = self.A32.__matmul__  # one thread: splitting gained nothing (docs/benchmarks.md)
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
        low end). Same products per sweep as damped block Jacobi, fewer LOBPCG iterations
        (docs/benchmarks.md). Starts from x = 0 when ``x`` is None."""
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


def coarse_spacing(R, cell, n_atoms):
    vol = abs(np.linalg.det(cell)) if cell is not None else float(np.prod(np.ptp(R, axis=0).clip(1e-12)))
    nodes = min(max(n_atoms / ATOMS_PER_NODE, 8), MAX_COARSE_NODES)
    return (vol / nodes) ** (1.0 / 3.0)


# -- the preconditioner of the lowest pairs -------------------------------------------------------
def lowest_preconditioner(inp, masses, matmat, *, positions, cell, seed: int):
    """(precond, description): the LOBPCG preconditioner for the lowest pairs of A.

    Args:
        inp: the HessianInput (mdhess/modes/_input.py).
        masses: (N,) masses.
        matmat: X -> A X (for the Lanczos estimate of the lowest eigenvalue).
        positions: (N, 3) positions (two-level preconditioner), or None (block Jacobi).
        cell: the periodic cell, or None (free space).
        seed: for the random vectors of the estimates.
    """
    s_atom = 1.0 / np.sqrt(masses)
    n = inp.n3
    # the mass-weighted matrix: given entry by entry, or assembled (transiently) from an
    # operator's blocks for the coarse grid
    # smoothing steps cost sparse products and save iterations (dense block work): they pay
    # off on sparse Hessians (elastic networks) but not on dense-ish ones (LJ at 2.5 sigma).
    # Sparse ones are floppy (hinges, loops): their coarse nodes also rotate.
    per_row = inp.fill() * n
    smooth = SMOOTH if positions is not None and per_row <= SMOOTH_MAX_PER_ROW else 0
    # the mass-weighted CSR: for the smoother (sparse matrices), and for the coarse grid of a
    # matrix that is not BSR of 3x3 blocks (or an operator's blocks, assembled transiently); a BSR
    # matrix is read in place (its CSR would need ~1.5x its memory again: docs/scaling.md)
    lean = getattr(inp, "blocks3", None) is not None and not smooth
    needs_csr = not lean and (inp.is_matrix or positions is not None)
    A_pre = inp.mass_weighted_csr(masses) if needs_csr else None
    D = csr_diagonal_blocks(A_pre) if A_pre is not None else inp.diagonal_blocks(masses)
    if positions is not None:
        nd = 6 if smooth else 3
        spacing = coarse_spacing(positions, cell, s_atom.size)
        P = trilinear_prolongator(positions, cell, 1.0 / s_atom, spacing, rotations=nd == 6)
        if lean:
            Ac0, PtP = inp.coarse_matrix(masses, P), (P.T @ P).toarray()

    def build(shift, indefinite_ok):
        """The preconditioner of A - shift I (shift < 0 below the spectrum: then SPD)."""
        Ds = D - shift * np.eye(3) if shift else D
        if positions is None:
            return block_jacobi(Ds)
        if lean:
            Ac = Ac0 - shift * PtP if shift else Ac0
            return TwoLevel(None, Ds, P, smooth=0, seed=seed, indefinite_ok=indefinite_ok, Ac=Ac)
        As = (A_pre - shift * scipy.sparse.identity(n, format="csr")).tocsr() if shift else A_pre
        return TwoLevel(As, Ds, P, smooth=smooth, seed=seed, indefinite_ok=indefinite_ok)

    def below_spectrum():
        if lean:
            bound = inp.abs_row_sum_max(masses)
        else:
            bound = float(abs(A_pre).sum(axis=1).max()) if A_pre is not None else None  # ||A||_inf
        return shift_below_spectrum(matmat, n, seed, bound)

    # A preconditioner for the lowest pairs must be positive definite. A saddle point's Hessian
    # is not, and neither are its block-Jacobi or coarse parts when a 3x3 diagonal block or
    # P^T A P has a negative eigenvalue (pinv of an indefinite block: LOBPCG then stalls). Those
    # are built from A - sigma I instead, sigma below the lowest eigenvalue (a Lanczos
    # estimate): positive definite, and near sigma where the wanted pairs are.
    shift = below_spectrum() if blocks_indefinite(D) else 0.0
    try:
        precond = build(shift, indefinite_ok=bool(shift))
    except IndefiniteError:
        shift = below_spectrum()
        # (if the estimate finds nothing negative, the coarse factor falls back to |Ac|^+)
        precond = build(shift, indefinite_ok=True)
    if positions is not None:
        description = (
            f"two-level (block Jacobi + {P.shape[1] // nd}-node trilinear coarse grid"
            + (", rotating nodes" if nd == 6 else "")
            + (f", {smooth} float32 Chebyshev smoothing steps)" if smooth else ", additive)")
        )
    else:
        description = "block Jacobi (pass positions= for the two-level preconditioner)"
    if shift:
        description += f", of A - sigma I with sigma = {shift:.6g} (indefinite matrix)"
    return precond, description

"""Athermal elastic constants of a periodic pair-potential configuration, with the non-affine
(relaxation) correction: ``elastic_constants``.

Conventions (docs/elasticity.md). Voigt order xx, yy, zz, yz, xz, xy with engineering shear
strains (e_4 = 2 eta_yz, ...): the 6 x 6 matrices below need no factors of 2. For a pair
p with displacement d = r_j - r_i + shift, r = |d|, b = phi'/r, c = (phi'' - phi'/r) / r^2
(the radial derivatives of ``pair/_blocks.block_coefficients``, the same the Hessian uses) and
w_I = d_a d_b for (a, b) the I-th Voigt pair, under a homogeneous Lagrangian strain eta carried
by positions and cell alike:

    dE/de_I             = sum_p b w_I                         (stress sigma_I = that / V)
    d2E/de_I de_J       = sum_p c w_I w_J                     (Born term x V)
    d2E/dr_j de_I = Xi  = sum_p +-[c w_I d + b (e_a d_b + e_b d_a)]   (+ at j, - at i)

The relaxed (Lagrangian) constants are born - Xi^T H^+ Xi / V (Lemaitre & Maloney, J. Stat.
Phys. 123, 415 (2006)); ``C`` adds the stress term of Wallace's stress-strain (Birch)
coefficients, so that the Cauchy stress of the relaxed, strained configuration changes by
C @ e for a small symmetric strain e (what matscipy's ``get_elastic_constants`` returns).

H^+ Xi is solved with the rigid translations and the rattlers' degrees of freedom (atoms with no
interacting neighbour) projected out: by preconditioned conjugate gradients on H.v products
(``mdhess.hvp``), or by a sparse factorisation of H with one atom pinned (exact for the
consistent right-hand sides Xi).
"""

import time
import warnings
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import scipy.sparse

from .._checks import check_choice
from .._device import jit, to_device
from .._errors import InputError, NonFiniteError, NotAtEquilibriumWarning
from ..pair._blocks import block_coefficients
from ..pair._compute import pair_geometry
from ..pair._layouts import bsr_from_blocks
from ..pair._operators import StoredBlockOperator
from ..pair._prepare import Prepared, raise_nonfinite, resolve_dtype
from ._shift_invert import factor_shifted

__all__ = ["ElasticConstants", "elastic_constants", "VOIGT"]

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
"""Voigt index I -> Cartesian pair (a, b): xx, yy, zz, yz, xz, xy."""
ELASTIC_SOLVERS = ("auto", "cg", "direct")
AVERAGES = ("hill", "voigt", "reuss")
# "auto": the sparse factorisation up to this many atoms, conjugate gradients above. At N = 2000
# (KA glass) the factorisation is 2.6x faster than CG (docs/benchmarks.md, "Elastic constants");
# its fill grows faster than CG's work, the crossover above that is not measured yet
DIRECT_MAX_ATOMS = 3000
CG_MAXITER = 20000
CG_CHECK_EVERY = 5  # iterations between host-side convergence checks
# A structure counts as out of mechanical equilibrium (warning) when its largest atomic force
# exceeds this fraction of the largest pair force |phi'|: the formula assumes zero forces
FORCE_WARN_RATIO = 1e-6


@dataclass(frozen=True)
class ElasticConstants:
    """Elastic constants of one configuration (energy / length^3, the potential's units).

    All 6 x 6 matrices are in Voigt order xx, yy, zz, yz, xz, xy with engineering shear strains.

    Attributes:
        C: (6, 6) stress-strain (Birch) coefficients, ``born + stress_term + nonaffine``: the
            Cauchy stress of the relaxed configuration under a small symmetric strain e changes
            by ``C @ e``. Not symmetric when the stress is not hydrostatic.
        born: (6, 6) affine Born term (1/V) d2E/de de (Lagrangian strain, symmetric).
        stress_term: (6, 6) the stress term 1/2 (s_am d_bn + s_an d_bm + s_bm d_an + s_bn d_am)
            - s_ab d_mn of Wallace's coefficients.
        nonaffine: (6, 6) the relaxation term -Xi^T H^+ Xi / V (negative semidefinite; zeros
            when ``relax=False``).
        stress: (3, 3) the configuration's stress (1/V) dE/d(strain), ASE's sign (tension > 0).
        displacements: (6, N, 3) non-affine displacement per unit strain, -H^+ Xi (one field per
            Voigt component; mean zero), or None when ``relax=False``.
        volume: cell volume.
        n_zero_modes: zero modes projected out of H: 3 translations + 3 per rattler.
        rattlers: (r,) indices of the atoms with no interacting neighbour.
        max_force: largest |force| component on an atom (energy / length).
        solver: "cg", "direct" or "none" (relax=False); iterations: CG iterations (0 otherwise);
        residual: largest relative residual |P (H x - Xi)| / |Xi| over the six columns.
        seconds: wall time of the call.
    """

    C: np.ndarray
    born: np.ndarray
    stress_term: np.ndarray
    nonaffine: np.ndarray
    stress: np.ndarray
    displacements: np.ndarray | None
    volume: float
    n_zero_modes: int
    rattlers: np.ndarray
    max_force: float
    solver: str
    iterations: int
    residual: float
    seconds: float

    @property
    def tensor(self) -> np.ndarray:
        """(3, 3, 3, 3) C_abmn from ``C`` (minor symmetries restored from the Voigt indices)."""
        T = np.empty((3, 3, 3, 3))
        for I, (a, b) in enumerate(VOIGT):
            for J, (m, n) in enumerate(VOIGT):
                for x, y in ((a, b), (b, a)):
                    for u, v in ((m, n), (n, m)):
                        T[x, y, u, v] = self.C[I, J]
        return T

    def moduli(self, average: str = "hill") -> tuple[float, float]:
        """(bulk modulus K, shear modulus G) of ``C`` by the Voigt, Reuss or Hill (their mean)
        average over orientations (Hill, Proc. Phys. Soc. A 65, 349 (1952)); for an isotropic
        sample the three agree. The Reuss bounds use S = C^-1 (engineering shear compliances)."""
        check_choice(average, AVERAGES, call="ElasticConstants.moduli", name="average")
        C = 0.5 * (self.C + self.C.T)
        Kv = (C[0, 0] + C[1, 1] + C[2, 2] + 2 * (C[0, 1] + C[0, 2] + C[1, 2])) / 9
        Gv = (C[0, 0] + C[1, 1] + C[2, 2] - (C[0, 1] + C[0, 2] + C[1, 2]) + 3 * (C[3, 3] + C[4, 4] + C[5, 5])) / 15
        if average == "voigt":
            return float(Kv), float(Gv)
        S = np.linalg.inv(C)
        Kr = 1.0 / (S[0, 0] + S[1, 1] + S[2, 2] + 2 * (S[0, 1] + S[0, 2] + S[1, 2]))
        Gr = 15.0 / (4 * (S[0, 0] + S[1, 1] + S[2, 2]) - 4 * (S[0, 1] + S[0, 2] + S[1, 2]) + 3 * (S[3, 3] + S[4, 4] + S[5, 5]))
        if average == "reuss":
            return float(Kr), float(Gr)
        return float((Kv + Kr) / 2), float((Gv + Gr) / 2)

    @property
    def bulk_modulus(self) -> float:
        """Hill average bulk modulus (``moduli("hill")[0]``)."""
        return self.moduli("hill")[0]

    @property
    def shear_modulus(self) -> float:
        """Hill average shear modulus (``moduli("hill")[1]``)."""
        return self.moduli("hill")[1]


# -- the per-pair terms (jitted) -----------------------------------------------------------------
_VA, _VB = np.array(VOIGT).T


def voigt_products(d):
    """(p, 6) w_I = d_a d_b for the Voigt pairs (a, b) (numpy or JAX arrays)."""
    return d[:, _VA] * d[:, _VB]


@jit
def _radial_terms(potential, R, species, i, j, shift, mask):
    """The only jitted step: per-pair displacements d (p, 3) and the radial coefficients
    a = phi'' - phi'/r, b = phi'/r (zero on padding slots). Everything else is a few array
    operations over the pairs, done on the host in float64 (``pair_terms``): compiling them into
    this function cost 1.7 s of CPU on a first call (N = 2000) against 0.4 s for this kernel,
    and their host run time is ~20 ms."""
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    r = jnp.sqrt(jnp.where(mask, jnp.sum(d * d, axis=1), 1.0))
    a, b = block_coefficients(potential.phi_eff, r, pp)
    return d, jnp.where(mask, a, 0.0), jnp.where(mask, b, 0.0)


def _atom_sums(idx, x, n_atoms: int):
    """(N, ...) sums of the per-pair rows of x (p, ...) at the atoms idx (p,)."""
    flat = x.reshape(x.shape[0], -1)
    out = np.stack([np.bincount(idx, weights=flat[:, k], minlength=n_atoms) for k in range(flat.shape[1])], axis=1)
    return out.reshape((n_atoms,) + x.shape[1:])


def pair_terms(potential, R, species, i, j, shift, mask, n_atoms: int):
    """Everything one configuration needs, from one pass over the pair list: V x born (6, 6),
    V x stress (6,), Xi (N, 3, 6), forces (N, 3), the pair blocks K (p, 3, 3) and the diagonal
    blocks (N, 3, 3) of H, max |phi'|, and whether all of it is finite (float64 numpy)."""
    d, a, b = (np.asarray(x, np.float64) for x in _radial_terms(potential, R, species, i, j, shift, mask))
    i, j, mask = np.asarray(i), np.asarray(j), np.asarray(mask)
    r = np.sqrt(np.where(mask, np.sum(d * d, axis=1), 1.0))
    c = a / (r * r)
    w = voigt_products(d)  # (p, 6)
    born = (c[:, None] * w).T @ w
    sig = b @ w
    # x_pcI = c w_I d_c + b (delta_ac d_b + delta_bc d_a): the derivative of b w_I along d
    x = (c[:, None] * d)[:, :, None] * w[:, None, :]
    for I, (a_, b_) in enumerate(VOIGT):
        x[:, a_, I] += b * d[:, b_]
        x[:, b_, I] += b * d[:, a_]
    xi = _atom_sums(j, x, n_atoms) - _atom_sums(i, x, n_atoms)  # + at j, - at i
    g = b[:, None] * d  # g = phi' u = b d is dE/dr_j
    F = _atom_sums(i, g, n_atoms) - _atom_sums(j, g, n_atoms)
    u = d / r[:, None]
    K = a[:, None, None] * (u[:, :, None] * u[:, None, :]) + b[:, None, None] * np.eye(3)  # pair_blocks
    D = _atom_sums(i, K, n_atoms) + _atom_sums(j, K, n_atoms)
    ok = bool(np.all(np.isfinite(born)) and np.all(np.isfinite(xi)) and np.all(np.isfinite(K)))
    return born, sig, xi, F, K, D, float(np.max(np.abs(b * r))), ok


def voigt_to_matrix(s6) -> np.ndarray:
    """(3, 3) symmetric tensor from its Voigt components (xx, yy, zz, yz, xz, xy)."""
    s = np.empty((3, 3))
    for I, (a, b) in enumerate(VOIGT):
        s[a, b] = s[b, a] = s6[I]
    return s


def stress_term(sigma) -> np.ndarray:
    """(6, 6) T_IJ = 1/2 (s_am d_bn + s_an d_bm + s_bm d_an + s_bn d_am) - s_ab d_mn, Voigt (a, b) = I,
    (m, n) = J: the difference between Wallace's stress-strain coefficients and the second
    derivatives of the energy with respect to Lagrangian strain (Wallace, Thermodynamics of
    Crystals (1972), eq. 2.2x; matscipy's ``get_stress_contribution_to_elastic_constants``)."""
    s, e = np.asarray(sigma, dtype=np.float64), np.eye(3)
    T = np.empty((6, 6))
    for I, (a, b) in enumerate(VOIGT):
        for J, (m, n) in enumerate(VOIGT):
            T[I, J] = 0.5 * (s[a, m] * e[b, n] + s[a, n] * e[b, m] + s[b, m] * e[a, n] + s[b, n] * e[a, m]) - s[a, b] * e[m, n]
    return T


# -- H^+ Xi ---------------------------------------------------------------------------------------
class _Projector:
    """Orthogonal projector onto the complement of H's known null space: the rattlers' degrees of
    freedom (rows zeroed) and the uniform translation of the other atoms (mean removed)."""

    def __init__(self, n_atoms: int, rattlers: np.ndarray):
        self.keep = np.ones(n_atoms, dtype=bool)
        self.keep[rattlers] = False
        self.n_keep = int(self.keep.sum())

    def __call__(self, X):  # (N, 3, k) or (3N, k)
        shape = X.shape
        Y = X.reshape(self.keep.size, 3, -1).copy()
        Y[~self.keep] = 0.0
        if self.n_keep:
            Y[self.keep] -= Y[self.keep].mean(axis=0)
        return Y.reshape(shape)


def _block_jacobi(D, keep):
    """(N, 3, 3) inverses of the diagonal blocks (zero for rattlers; pseudo-inverse if singular)."""
    Dinv = np.zeros_like(D)
    Dinv[keep] = np.linalg.pinv(D[keep], rcond=1e-12, hermitian=True)
    return Dinv


def solve_cg(op, B, proj: _Projector, Dinv, *, tol: float, maxiter: int = CG_MAXITER):
    """X = H^+ B for the columns of B (3N, k) by block-Jacobi preconditioned conjugate gradients
    on the range of the projector (H commutes with it), products ``op @ V``. Returns
    (X, iterations, relative residual of the recurrence per column)."""
    n3, k = B.shape
    N = n3 // 3

    def precond(Rm):
        return proj(np.matmul(Dinv, Rm.reshape(N, 3, k)).reshape(n3, k))

    b = proj(B)
    bnorm = np.linalg.norm(b, axis=0)
    bnorm[bnorm == 0] = 1.0
    X = np.zeros_like(b)
    Rm = b.copy()
    Z = precond(Rm)
    P = Z.copy()
    rz = np.sum(Rm * Z, axis=0)
    active = np.linalg.norm(Rm, axis=0) > tol * bnorm
    it = 0
    while active.any() and it < maxiter:
        AP = proj(np.asarray(op @ P, dtype=np.float64))
        pAp = np.sum(P * AP, axis=0)
        alpha = np.where(active & (pAp > 0), rz / np.where(pAp > 0, pAp, 1.0), 0.0)
        X += alpha * P
        Rm -= alpha * AP
        Z = precond(Rm)
        rz_new = np.sum(Rm * Z, axis=0)
        beta = np.where(active, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
        P = Z + beta * P
        rz = rz_new
        it += 1
        if it % CG_CHECK_EVERY == 0 or it == maxiter:
            active = np.linalg.norm(Rm, axis=0) > tol * bnorm
    return X, it


def solve_direct(H, B, proj: _Projector, call: str):
    """X = H^+ B by a sparse factorisation of H (scipy CSR, 3N x 3N) without the rattlers and with
    one atom pinned (its rows and columns removed): exact for right-hand sides orthogonal to the
    null space."""
    keep = proj.keep
    atoms = np.flatnonzero(keep)
    X = np.zeros_like(B)
    if atoms.size < 2:
        return X
    dof = (3 * atoms[1:, None] + np.arange(3)).ravel()  # the first kept atom is pinned
    A = H[dof][:, dof]
    try:
        f = factor_shifted(A.tocsr(), 0.0)
        Y = f.solve(np.ascontiguousarray(proj(B)[dof]))
    except (InputError, RuntimeError, ArithmeticError) as exc:
        raise InputError(
            f"{call}: the Hessian is singular beyond the translations and the rattlers ({exc}); "
            "the structure has other zero modes (floppy or unstable): use solver='cg' to see whether "
            "they couple to the strain"
        ) from None
    X[dof] = Y
    return proj(X)


# -- the public call -------------------------------------------------------------------------------
def _check_tol(tol, call):
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer)) or not (0 < tol < 1):
        raise InputError(f"{call}(tol=...) must be a number in (0, 1); got {tol!r}")
    return float(tol)


def elastic_constants(potential, positions, box, *, species=None, relax=True, solver="auto", tol=1e-10):
    """Athermal elastic constants of a periodic configuration at mechanical equilibrium.

    ``C = born + stress_term + nonaffine`` (Voigt, engineering shear strains): the affine Born
    term, the stress term of the stress-strain coefficients, and the non-affine relaxation
    -Xi^T H^+ Xi / V (Lemaitre & Maloney, J. Stat. Phys. 123, 415 (2006)); docs/elasticity.md.

    Args:
        potential: an mdhess ``PairPotential`` with a cutoff.
        positions: (N, 3) in the potential's length units, an energy minimum (inherent
            structure, relaxed crystal, jammed packing).
        box: scalar, (3,) edge lengths or (3, 3) cell (rows are cell vectors, any triclinic
            cell); must be periodic.
        species: (N,) integers 0..S-1, or None.
        relax: True includes the non-affine relaxation (the physical constants of a disordered
            solid); False gives the affine (unrelaxed) ones.
        solver: "auto" (``"direct"`` up to ``DIRECT_MAX_ATOMS`` atoms, else ``"cg"``), "cg"
            (block-Jacobi preconditioned conjugate gradients on H.v products: memory O(pairs)),
            or "direct" (a sparse factorisation of H).
        tol: relative residual at which CG stops, per strain component.

    Returns:
        ``ElasticConstants``.

    Raises:
        InputError: free space (box=None), a non-pair potential, bad positions, box, species,
            relax, solver or tol; CG that does not converge, or a singular factorisation (zero
            modes beyond translations and rattlers).
        NonFiniteError: the pair terms came out NaN or infinite.

    Warns:
        NotAtEquilibriumWarning: the largest force exceeds ``FORCE_WARN_RATIO`` times the largest
            pair force (the message gives it): the constants assume a force-free structure.
    """
    call = "elastic_constants"
    t0 = time.perf_counter()
    if box is None:
        raise InputError(f"{call}(box=None): elastic constants need a periodic box (strain and volume); got free space")
    if not isinstance(relax, (bool, np.bool_)):
        raise InputError(f"{call}(relax=...) must be True or False; got {relax!r}")
    check_choice(solver, ELASTIC_SOLVERS, call=call, name="solver")
    tol = _check_tol(tol, call)
    p = Prepared(potential, positions, box, species, call)
    if p.potential.bonds() is not None:
        raise InputError(
            f"{call}(potential=...) must be a PairPotential; got {type(p.potential).__name__} "
            "(an elastic network's bonds are tied to its reference box, so a strain is not defined)"
        )
    dt = resolve_dtype(None, call)
    args = p.arrays(dt)
    N = p.n_atoms
    born, sig, xi, F, K, D, fmax_pair, ok = pair_terms(*args, n_atoms=N)
    if not ok:
        raise_nonfinite(call, "pair terms")
    V = abs(float(np.linalg.det(p.cell)))
    born = born / V
    sigma = voigt_to_matrix(sig / V)
    Xi = xi.reshape(3 * N, 6)
    i, j = np.asarray(args[3]), np.asarray(args[4])
    rattlers = np.flatnonzero(~np.any(D.reshape(N, 9) != 0, axis=1))
    max_force = float(np.abs(F).max())
    scale = float(fmax_pair)
    if scale > 0 and max_force > FORCE_WARN_RATIO * scale:
        warnings.warn(
            f"{call}: the structure is not at mechanical equilibrium: max |force| = {max_force:.3g} "
            f"(largest pair force {scale:.3g}); the formulas assume zero forces, minimise first",
            NotAtEquilibriumWarning,
            stacklevel=2,
        )
    proj = _Projector(N, rattlers)
    n_zero = 3 * rattlers.size + (3 if proj.n_keep else 0)
    T = stress_term(sigma)
    if not relax:
        zeros = np.zeros((6, 6))
        return ElasticConstants(born + T, born, T, zeros, sigma, None, V, n_zero, rattlers, max_force, "none", 0, 0.0,
                                time.perf_counter() - t0)  # fmt: skip
    kind = ("direct" if N <= DIRECT_MAX_ATOMS else "cg") if solver == "auto" else solver
    iterations = 0
    if kind == "direct":
        # the factorisation's scipy CSR matrix also gives the residual (no JAX product to compile)
        H = scipy.sparse.csr_matrix(bsr_from_blocks(K, D, i, j, N))
        X = solve_direct(H, Xi, proj, call)
        HX = H @ X
    else:
        op = StoredBlockOperator(to_device(K, dt), args[3], args[4], N)  # what mdhess.hvp builds, same pair list
        X, iterations = solve_cg(op, Xi, proj, _block_jacobi(D, proj.keep), tol=tol)
        HX = np.asarray(op @ X, np.float64)
    b = proj(Xi)
    res = proj(HX) - b
    bn = np.linalg.norm(b, axis=0)
    rel = np.linalg.norm(res, axis=0) / np.where(bn > 0, bn, 1.0)
    residual = float(rel.max())
    if kind == "cg" and residual > max(10 * tol, 1e-8):
        raise InputError(
            f"{call}: conjugate gradients did not converge (relative residual {residual:.3g} after "
            f"{iterations} iterations, tol={tol:g}); the Hessian may have zero modes beyond the "
            f"translations and {rattlers.size} rattler(s) that couple to the strain, or be indefinite "
            "(not a minimum)"
        )
    if kind == "direct" and residual > 1e-6:  # a nearly singular factor: rounding ~ eps x condition number
        raise InputError(
            f"{call}: the sparse factorisation is inaccurate (relative residual {residual:.3g}): the Hessian is "
            f"(nearly) singular beyond the translations and {rattlers.size} rattler(s); use solver='cg'"
        )
    na = -(Xi.T @ X) / V
    na = 0.5 * (na + na.T)
    C = born + T + na
    if not np.all(np.isfinite(C)):
        raise NonFiniteError(f"{call}: non-finite elastic constants (NaN or inf)")
    U = -X.T.reshape(6, N, 3)
    return ElasticConstants(C, born, T, na, sigma, U, V, n_zero, rattlers, max_force, kind, iterations, residual,
                            time.perf_counter() - t0)  # fmt: skip


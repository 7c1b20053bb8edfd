"""Nonlinear (cubic and quartic) modes of a pair energy at a minimum: the soft, quasi-localised
excitations of glasses of Gartner & Lerner (SciPost Phys. 1, 016, 2016) and Kapteijns, Richard &
Lerner (Phys. Rev. E 101, 032130, 2020).

Along a unit direction z the energy is E(t) = E0 + kappa t^2/2 + tau t^3/6 + chi t^4/24 + ...
with kappa = H:zz, tau = U''':zzz, chi = U'''':zzzz. The cubic mode minimises kappa^3 / tau^2
(a scale-free cost: kappa^3 and tau^2 both grow as |z|^6); its gradient vanishes where

    H z = (kappa / tau) U''':zz                                          (cubic)

The quartic mode minimises kappa^2 / chi, stationary where H z = (kappa / chi) U'''':zzz.

Both are solved by the fixed-point iteration z <- H^-1 b(z) / |H^-1 b(z)| (b = U''':zz or
U'''':zzz): one preconditioned conjugate-gradient solve on Hessian-vector products per step (no
dense Hessian). The step z -> lambda H^-1 b(z) is a unit step along -H^-1 grad(cost) (up to a
positive factor), so it is a Newton-like descent with H as the metric; a backtracking line search
along it keeps the cost from increasing.

Masses: the problem is posed in mass-weighted coordinates q = M^1/2 x (as normal modes are), so
that with unit masses it is the usual one, and ``vector`` is the unit mass-weighted direction z;
the atoms move along ``displacement`` = M^-1/2 z. kappa is then omega^2 of the harmonic problem.
"""

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice, check_positions
from .._device import jit, to_device
from .._errors import InputError, NonFiniteError
from ..pair._api import hvp
from ..pair._blocks import pair_fourth_apply, pair_third_apply
from ..pair._compute import pair_geometry, segment_pair_sum
from ..pair._dynmat import check_masses_of
from ..pair._operators import StoredBlockOperator
from ..pair._prepare import Prepared
from ._nma import normal_modes
from ._rigid import project_out, rigid_body_basis

KINDS = ("cubic", "quartic")
ANDERSON = 8  # fixed-point steps mixed by Anderson acceleration
CALL = "nonlinear_mode"


@dataclass(frozen=True)
class NonlinearMode:
    """A cubic or quartic nonlinear mode (from ``mdhess.nonlinear_mode``).

    Attributes:
        kind: "cubic" or "quartic".
        vector: (N, 3) unit direction z in mass-weighted coordinates, rigid-body directions
            projected out (translations; rotations too in free space). Sign: cubic modes have
            tau <= 0 (the barrier lies along +vector); quartic modes have their largest
            component positive.
        displacement: (N, 3) the atoms' displacement pattern M^-1/2 z (length units per unit
            mass-weighted amplitude; equal to ``vector`` with unit masses).
        kappa, tau, chi: the second, third and fourth derivatives of E(R + t displacement) at
            t = 0 (energy / (mass length^2), ... ; energy / length^k with unit masses).
        barrier: cubic modes: the barrier estimate 2 kappa^3 / (3 tau^2) (energy units) of the
            cubic expansion E(t) = kappa t^2/2 + tau t^3/6, reached at t = -2 kappa / tau; None for
            quartic modes.
        residual: |H z - lambda P b(z)| / |H z| at the returned z (lambda = kappa / tau or
            kappa / chi, b = U''':zz or U'''':zzz, P the rigid-body projector).
        converged: residual <= tol.
        iterations: fixed-point steps taken.
        history: per step (index 0 = the start): "cost" (kappa^3/tau^2 or kappa^2/chi),
            "residual", "cg_iterations" (0 for the start).
    """

    kind: str
    vector: np.ndarray
    displacement: np.ndarray
    kappa: float
    tau: float
    chi: float
    barrier: float | None
    residual: float
    converged: bool
    iterations: int
    history: dict = field(default_factory=dict)

    @property
    def cost(self) -> float:
        """kappa^3 / tau^2 (cubic) or kappa^2 / chi (quartic)."""
        return _cost(self.kind, self.kappa, self.tau, self.chi)


def _cost(kind, kappa, tau, chi):
    if kind == "cubic":
        return kappa**3 / tau**2 if tau != 0 else np.inf
    return kappa**2 / chi if chi > 0 else np.inf


@partial(jit, static_argnames=("n_atoms", "order"))
def _tensor_apply(potential, R, species, i, j, shift, mask, X, n_atoms: int, order: int):
    """(N, 3) U''':XX (order 3) or U'''':XXX (order 4) for a displacement X (N, 3)."""
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    x = X[j] - X[i]
    if order == 3:
        w = pair_third_apply(potential.phi_eff, d, pp, x, x, mask)
    else:
        w = pair_fourth_apply(potential.phi_eff, d, pp, x, x, x, mask)
    return -segment_pair_sum(w, i, j, n_atoms)


@partial(jit, static_argnames=("n_atoms",))
def _pcg(K, i, j, s, Dinv, Y, rhs, rtol, maxiter, n_atoms: int):
    """Preconditioned CG for A y = rhs on the complement of the rigid-body directions Y, with
    A = M^-1/2 H M^-1/2 from the stored pair blocks and block-Jacobi preconditioning, in one
    jitted loop. Returns (y, iterations, min p.Ap / p.p seen: <= 0 when A is not positive)."""
    op = StoredBlockOperator(K, i, j, n_atoms)

    def P(v):
        return v - Y @ (Y.T @ v)

    def A(v):
        return P(s * op.mv(s * v))

    def M(r):
        return P(jnp.matmul(Dinv, r.reshape(n_atoms, 3, 1)).reshape(-1))

    rhs = P(rhs)
    bnorm = jnp.linalg.norm(rhs)
    r0 = rhs
    w0 = M(r0)

    def cond(c):
        y, r, p, rw, k, curv = c
        return (k < maxiter) & (jnp.linalg.norm(r) > rtol * bnorm) & (curv > 0)

    def body(c):
        y, r, p, rw, k, curv = c
        Ap = A(p)
        pAp = p @ Ap
        curv = jnp.minimum(curv, pAp / (p @ p))
        alpha = rw / pAp
        y = y + alpha * p
        r = r - alpha * Ap
        w = M(r)
        rw_new = r @ w
        p = w + (rw_new / rw) * p
        return y, r, p, rw_new, k + 1, curv

    init = (jnp.zeros_like(rhs), r0, w0, r0 @ w0, jnp.asarray(0), jnp.asarray(jnp.inf, rhs.dtype))
    y, r, _, _, k, curv = jax.lax.while_loop(cond, body, init)
    return P(y), k, curv


class _Problem:
    """The mass-weighted operators of one structure: A z = M^-1/2 H M^-1/2 z, b3(z), b4(z), the
    rigid-body projector and the preconditioned solve."""

    def __init__(self, potential, R, box, species, masses):
        self.p = Prepared(potential, R, box, species, CALL)
        self.args = self.p.arrays(np.float64)
        n = self.p.n_atoms
        self.n = n
        self.op = hvp(potential, R, box=box, species=species)
        self.s = np.repeat(1.0 / np.sqrt(masses), 3)  # M^-1/2 on the flat (3N,) vector
        free = self.p.cell is None
        self.Y = rigid_body_basis(masses, R if free else None, rotations=free)
        D = np.asarray(self.op.diagonal_blocks(), np.float64) / masses[:, None, None]
        low = np.linalg.eigvalsh(D)[:, 0]
        if np.any(low < -1e-10 * np.abs(D).max()):  # at a minimum every diagonal block is >= 0
            a = int(np.argmin(low))
            raise InputError(
                f"{CALL}(positions=...): the Hessian is not positive definite on the vibrational "
                f"directions (atom {a}'s diagonal block has eigenvalue {low[a]:.3g}); nonlinear modes are "
                "defined at a local energy minimum: minimise the structure first"
            )
        self.Dinv = np.linalg.pinv(D, rcond=1e-12, hermitian=True)
        self.dev = [to_device(x, np.float64) for x in (self.s, self.Dinv, self.Y)]

    def H(self, z):
        return self.s * np.asarray(self.op @ (self.s * z), np.float64)

    def b(self, z, order):
        X = to_device((self.s * z).reshape(self.n, 3), np.float64)
        out = np.asarray(_tensor_apply(*self.args, X, n_atoms=self.n, order=order), np.float64)
        return self.s * out.ravel()

    def P(self, v):
        return project_out(v[:, None], self.Y)[:, 0]

    def solve(self, rhs, rtol, maxiter):
        """y with A y = P rhs (y orthogonal to the rigid-body directions), CG iterations."""
        K, i, j = self.op.blocks()
        y, k, curv = _pcg(K, i, j, *self.dev, to_device(rhs, np.float64), rtol, maxiter, n_atoms=self.n)
        if not float(curv) > 0:
            raise InputError(
                f"{CALL}(positions=...): the Hessian is not positive definite on the vibrational "
                f"directions (found a direction with p.Hp / p.p = {float(curv):.3g}); nonlinear modes "
                "are defined at a local energy minimum: minimise the structure first"
            )
        return np.asarray(y, np.float64), int(k)


def _check_number(value, name, *, integer=False, lo=0.0):
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer) if integer else (int, float, np.number))
    if not ok or not np.isfinite(value) or value <= lo:
        what = "an integer >= 1" if integer else f"a finite number > {lo:g}"
        raise InputError(f"{CALL}({name}=...) must be {what}; got {value!r}")
    return int(value) if integer else float(value)


def _lowest_mode(prob: _Problem, potential, R, box, species, masses) -> np.ndarray:
    """The lowest vibrational mode (mass-weighted, unit) from ``normal_modes`` on the operator."""
    k = prob.Y.shape[1] + 1
    modes = normal_modes(prob.op, masses, k=k, box=box, positions=R, tol=1e-8)
    nz = np.flatnonzero(~modes.zero_mask)
    if nz.size == 0:
        raise InputError(f"{CALL}: the structure has no vibrational mode to start from (N = {prob.n})")
    return np.asarray(modes.vectors[:, nz[0]], np.float64)


def nonlinear_mode(
    potential,
    positions,
    *,
    kind="cubic",
    box=None,
    species=None,
    masses=None,
    z0=None,
    tol=1e-8,
    maxiter=200,
    cg_maxiter=5000,
) -> NonlinearMode:
    """The cubic (or quartic) nonlinear mode nearest a starting direction, at an energy minimum.

    The cubic mode minimises kappa^3 / tau^2 and satisfies H z = (kappa / tau) U''':zz; the quartic
    mode minimises kappa^2 / chi and satisfies H z = (kappa / chi) U'''':zzz (Gartner & Lerner,
    SciPost Phys. 1, 016 (2016); Kapteijns, Richard & Lerner, PRE 101, 032130 (2020)). Solved by
    the fixed-point iteration z <- H^-1 b(z) (normalised) with a preconditioned CG on
    Hessian-vector products, Anderson mixing of the last steps, and a backtracking line search
    that never lets the cost increase (``history["cost"]`` is non-increasing). The quartic cost
    kappa^2 / chi is taken as infinite where chi <= 0.

    Args:
        potential, positions, box, species: as for ``mdhess.energy``. The positions should be a
            local minimum of the energy (the Hessian positive on the vibrational directions).
        kind: "cubic" or "quartic".
        masses: None (unit masses), one mass for all, or (N,) masses: the mode is computed in
            mass-weighted coordinates (see ``NonlinearMode``).
        z0: (N, 3) starting direction in mass-weighted coordinates (projected and normalised
            here); None starts from the lowest harmonic mode (``mdhess.normal_modes``).
        tol: the relative fixed-point residual to reach (default 1e-8).
        maxiter: largest number of fixed-point steps.
        cg_maxiter: largest number of CG iterations per linear solve.

    Returns:
        NonlinearMode (``converged`` False when maxiter was reached first; the best direction
        found is returned).

    Raises:
        InputError: an unknown kind; z0 of the wrong shape, zero (after projecting out the
            rigid-body directions) or non-finite; bad masses, tol or maxiter; a Hessian that is
            not positive on the vibrational directions (not a minimum).
        NonFiniteError: a derivative came out NaN or infinite.
    """
    check_choice(kind, KINDS, call=CALL, name="kind")
    tol = _check_number(tol, "tol")
    maxiter = _check_number(maxiter, "maxiter", integer=True)
    cg_maxiter = _check_number(cg_maxiter, "cg_maxiter", integer=True)
    R = check_positions(positions, call=CALL)
    m = check_masses_of(masses, R.shape[0], call=CALL)
    if z0 is not None:
        Z0 = check_positions(z0, call=CALL, name="z0", n_atoms=R.shape[0])
    prob = _Problem(potential, R, box, species, m)
    if z0 is None:
        z = _lowest_mode(prob, potential, R, box, species, m)
    else:
        z = prob.P(Z0.ravel())
        if not np.linalg.norm(z) > 1e-12 * max(np.linalg.norm(Z0), 1e-300):
            raise InputError(
                f"{CALL}(z0=...) is zero after projecting out the rigid-body directions (a pure "
                "translation or rotation, or all zeros); give a vibrational direction"
            )
    z = z / np.linalg.norm(z)
    order = 3 if kind == "cubic" else 4

    def evaluate(z):
        Hz = prob.H(z)
        b = prob.P(prob.b(z, order))
        kappa = float(z @ Hz)
        third = float(z @ b)  # tau (cubic) or chi (quartic) = z . b
        if not (np.all(np.isfinite(Hz)) and np.all(np.isfinite(b))):
            raise NonFiniteError(f"{CALL}: a derivative along the mode came out NaN or infinite")
        lam = kappa / third if third != 0 else np.inf
        res = np.linalg.norm(Hz - lam * b) / np.linalg.norm(Hz) if np.isfinite(lam) else np.inf
        cost = _cost(kind, kappa, third, third)
        return {"z": z, "b": b, "kappa": kappa, "third": third, "residual": res, "cost": cost}

    cur = evaluate(z)
    hist = {"cost": [cur["cost"]], "residual": [cur["residual"]], "cg_iterations": [0], "accelerated": [False]}
    xs, fs = [], []  # Anderson history: iterates and their fixed-point steps G(x) - x
    it = 0
    while cur["residual"] > tol and it < maxiter:
        it += 1
        rtol = min(1e-3, max(1e-13, 1e-2 * cur["residual"]))
        y, ncg = prob.solve(cur["b"], rtol, cg_maxiter)
        if y @ cur["z"] < 0:  # b(z) is even (cubic) in z: keep the orientation of z
            y = -y
        x = cur["z"]
        f = y / np.linalg.norm(y) - x
        xs.append(x)
        fs.append(f)
        del xs[:-(ANDERSON + 1)], fs[:-(ANDERSON + 1)]
        best, accelerated = None, False
        if len(xs) > 1:  # Anderson mixing of the last steps (type II, unit mixing)
            dX = np.diff(np.stack(xs, 1), axis=1)
            dF = np.diff(np.stack(fs, 1), axis=1)
            gamma = np.linalg.lstsq(dF, f, rcond=1e-10)[0]
            trial = x + f - (dX + dF) @ gamma
            trial = prob.P(trial)
            new = evaluate(trial / np.linalg.norm(trial))
            if new["cost"] <= cur["cost"] * (1 + 1e-13):
                best, accelerated = new, True
        if best is None:  # the plain fixed-point step, backtracking so the cost never increases
            xs, fs = xs[-1:], fs[-1:]
            alpha = 1.0
            for _ in range(30):
                trial = x + alpha * f
                new = evaluate(trial / np.linalg.norm(trial))
                if new["cost"] <= cur["cost"] * (1 + 1e-13) or not np.isfinite(cur["cost"]):
                    best = new
                    break
                alpha *= 0.5
        if best is None:  # no decrease along the step: the cost is at its floor in float64
            break
        cur = best
        hist["cost"].append(cur["cost"])
        hist["residual"].append(cur["residual"])
        hist["cg_iterations"].append(ncg)
        hist["accelerated"].append(accelerated)

    z = cur["z"]
    if kind == "cubic":
        if cur["third"] > 0:
            z = -z
    else:
        if z[np.argmax(np.abs(z))] < 0:
            z = -z
    # both derivatives along the final direction (tau and chi), from the same contractions
    b3 = prob.b(z, 3)
    b4 = prob.b(z, 4)
    kappa, tau, chi = cur["kappa"], float(z @ b3), float(z @ b4)
    barrier = 2.0 * kappa**3 / (3.0 * tau**2) if kind == "cubic" and tau != 0 else None
    return NonlinearMode(
        kind=kind,
        vector=z.reshape(-1, 3),
        displacement=(prob.s * z).reshape(-1, 3),
        kappa=kappa,
        tau=tau,
        chi=chi,
        barrier=barrier,
        residual=float(cur["residual"]),
        converged=bool(cur["residual"] <= tol),
        iterations=it,
        history={k: np.asarray(v) for k, v in hist.items()},
    )


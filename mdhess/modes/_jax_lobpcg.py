"""LOBPCG in JAX, device-resident: the ``solver="jax-lobpcg"`` of ``normal_modes``.

The same method as mdhess/modes/_lobpcg.py (Knyazev 2001; SVQB orthonormalisation, Duersch et
al. 2018; soft locking; hard deflation of the rigid-body directions; the same convergence test
and warning), written so that every vector of length 3N stays on the JAX device: the iterate X,
A X, the search directions, the preconditioner's work and the products. Only (b,) flags and
scalars come back to the host, once per iteration, for the convergence decision.

What differs from the numpy version, and why:
- Static shapes. Soft locking there drops converged columns from the search block (its width
  changes); here they are zeroed (masked) instead, so each jitted step compiles once. Zero
  columns are dropped by SVQB (a zero Gram row) and kept out of the Rayleigh-Ritz by a diagonal
  entry above the spectrum of the projected matrix (they can never be among the lowest b).
- The products take the whole (3N, b) block (masked columns included).
- The second Gram-Schmidt pass runs under ``lax.cond``, only when a column needs it.
- Memory is recycled: the steps donate their dead inputs, and the large (n, 2b) intermediates
  are written into donated work buffers that go round the loop (``_rayleigh_ritz``). XLA's CPU
  runtime otherwise takes each call's temporaries as one fresh allocation, and the first touch
  of fresh pages cost seconds of system time per solve (docs/benchmarks.md).

The operator: a matrix (dense or scipy sparse) becomes padded 3x3 block rows on the device
(mdhess/modes/_device_ops.py); an mdhess ``HessianOperator`` (stored blocks or matrix-free) is
used through its own jitted product. The preconditioner (block Jacobi, plus the additive
trilinear coarse grid when positions are known) is set up on the host once and applied on the
device.
"""

import warnings
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jax.sharding import NamedSharding, PartitionSpec

from .._device import jit
from .._progress import Status
from ..pair._sharded import process_zero_decides, put_global, replicate, to_host
from ._device_ops import (
    apply_preconditioner,
    coarse_inverse,
    device_preconditioner,
    ell_from_sparse,
    ell_matmat,
    ell_shape,
)
from ._input import SOLVER_BLOCKS, BlockRowProduct, solver_bytes
from ._lobpcg import REORTH_KEEP, LobpcgInfo, attainable_residual, blas_single_thread, solver_columns
from ._precond import blocks_indefinite, coarse_spacing, shift_below_spectrum, trilinear_prolongator


def _put(x, sharding=None):
    """``x`` on the device(s): ``jax.device_put`` for no sharding, else ``put_global`` (a
    sharding may span processes: an operator sharded across hosts)."""
    return jax.device_put(x) if sharding is None else put_global(x, sharding)


def _replicated(sharding):
    """The replicated sharding for the small arrays of a solve whose rows are split across
    processes (they must sit on the same devices as the rows); None otherwise."""
    if sharding is None or sharding.is_fully_addressable:
        return None
    return NamedSharding(sharding.mesh, PartitionSpec())

REFRESH_EVERY = 10  # iterations between re-orthonormalisations of X (as in _lobpcg.py)
SVQB_DROP = 1e-10  # relative Gram eigenvalue below which SVQB drops a direction (as in _lobpcg.py)


# -- the steps (jitted; static shapes) ------------------------------------------------------------
def _project_out(U, Y):
    return U if Y.shape[1] == 0 else U - Y @ (Y.T @ U)


def _svqb(U, AU):
    """U C, AU C with U C orthonormal (near-dependent and zero columns of U dropped: zero columns
    of U C), and the mask of the columns kept."""
    G = U.T @ U
    dg = jnp.diag(G)
    d = jnp.where(dg > 0, jnp.sqrt(jnp.where(dg > 0, dg, 1.0)), 1.0)
    G = G / d[:, None] / d[None, :]
    g, V = jnp.linalg.eigh((G + G.T) / 2)
    keep = g > SVQB_DROP * g.max()
    s = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, g, 1.0)), 0.0)
    C = V * s[None, :] / d[:, None]
    return U @ C, AU @ C, keep


def _residuals(X, AX, w, Y, consts, k: int):
    """The test of mdhess/modes/_lobpcg.py's ``lobpcg`` (see there): (R, relative residuals, ok)."""
    tol, scale, attainable = consts[0], consts[1], consts[2]
    b = X.shape[1]
    R = _project_out(AX - X * w[None, :], Y)
    rn = jnp.linalg.norm(R, axis=0)
    floor = jnp.maximum(jnp.abs(w), 1e-6 * jnp.maximum(scale, 1e-300))
    gap = jnp.maximum(w[-1] - w, 1e-3 * floor) if b > k else 1e-3 * floor
    ok = (rn**2 / gap <= tol * floor) & (rn <= jnp.sqrt(tol) * floor)
    ok = ok | (rn <= attainable)
    return R, rn / floor, ok


@jit
def _init(X0, Y):
    """The start block off span(Y), orthonormal; and its rank."""
    X, _, keep = _svqb(_project_out(X0, Y), X0)
    return X, keep.sum()


@jit
def _start(X, AX):
    """Rayleigh-Ritz on span(X) for an orthonormal X; and max |Ritz value|."""
    H = X.T @ AX
    w, V = jnp.linalg.eigh((H + H.T) / 2)
    return X @ V, AX @ V, w, jnp.abs(w).max()


@partial(jit, donate_argnames=("X", "AX"))
def _refresh(X, AX):
    """Orthonormality lost to rounding restored (SVQB), then Rayleigh-Ritz; and the rank kept."""
    X, AX, keep = _svqb(X, AX)
    X, AX, w, _ = _start(X, AX)
    return X, AX, w, keep.sum()


@partial(
    jit, static_argnames=("k", "precondition"), donate_argnames=("P", "AP", "work"), keep_unused=True
)
def _prepare(X, AX, w, P, AP, Y, consts, pre, work, k: int, precondition: bool):
    """The search block Q = [W, P] orthogonalised against X (A P updated alike), the convergence
    flags and relative residuals. W: the preconditioned residuals of the active columns (zero for
    the converged wanted ones: soft locking). ``work``: an (n, 2b) buffer, donated, that Q is
    written into (as in ``_rayleigh_ritz``)."""
    b = X.shape[1]
    R, res, ok = _residuals(X, AX, w, Y, consts, k)
    active = jnp.concatenate([~ok[:k], jnp.ones(b - k, dtype=bool)])
    W = jnp.where(active[None, :], R, 0.0)
    if precondition:
        W = apply_preconditioner(pre, W)
    W = _project_out(W, Y)
    Q = jnp.concatenate([W, P], axis=1)
    sq0 = jnp.sum(Q * Q, axis=0)
    c = X.T @ Q
    Q = Q - X @ c
    AP = AP - AX @ c[:, b:]
    redo = jnp.sum(Q * Q, axis=0) < REORTH_KEEP**2 * sq0

    def second_pass(args):
        Q, AP = args
        c = jnp.where(redo[None, :], X.T @ Q, 0.0)
        return Q - X @ c, AP - AX @ c[:, b:]

    Q, AP = jax.lax.cond(jnp.any(redo), second_pass, lambda a: a, (Q, AP))
    return Q, Q[:, :b], AP, ok, res


@partial(jit, donate_argnames=("X", "AX", "AQW", "AP", "work"), keep_unused=True)
def _rayleigh_ritz(X, AX, w, Q, AQW, AP, work):
    """Rayleigh-Ritz on [X, Q]: the new X, A X, Ritz values, P, A P, how many directions Q
    kept, and ``work``.

    ``work``: three (n, 2b) buffers, donated and returned (their contents are of no use to the
    caller). The three (n, 2b) intermediates (A Q; Q and A Q made orthonormal) are returned in
    them, so that XLA writes them into memory the process already holds: as temporaries they
    were one fresh allocation per call, above glibc's mmap threshold, whose first touch cost
    page faults (2.4 s of system time in a 16 s solve at N = 13,500: docs/benchmarks.md)."""
    b = X.shape[1]
    AQ = jnp.concatenate([AQW, AP], axis=1)
    AQ0 = AQ
    Q, AQ, keep = _svqb(Q, AQ)
    XAQ = X.T @ AQ
    QAQ = Q.T @ AQ
    QAQ = (QAQ + QAQ.T) / 2
    # dropped directions (zero columns of Q): a diagonal entry above the whole spectrum of the
    # projected matrix (its Frobenius norm bounds it), so they are never among the lowest b
    big = 2.0 * (jnp.sqrt(jnp.sum(QAQ**2) + 2 * jnp.sum(XAQ**2) + jnp.sum(w**2))) + 1.0
    QAQ = QAQ + jnp.diag(jnp.where(keep, 0.0, big))
    Hs = jnp.block([[jnp.diag(w), XAQ], [XAQ.T, QAQ]])
    ws, C = jnp.linalg.eigh(Hs)
    C = C[:, :b]
    Cx, Cq = C[:b], C[b:]
    P, AP = Q @ Cq, AQ @ Cq
    return X @ Cx + P, AX @ Cx + AP, ws[:b], P, AP, keep.sum(), (AQ0, Q, AQ)


@partial(jit, static_argnames=("k",))
def _final(X, AX, w, Y, consts, k: int):
    _, res, ok = _residuals(X, AX, w, Y, consts, k)
    return res, ok


@jit
def _noise(AX, AX_low):
    """max_j ||(A X)_j - (A X)_j~||: the error of the low-precision product on a block."""
    return jnp.sqrt(jnp.max(jnp.sum((AX_low - AX) ** 2, axis=0)))


@jit
def _to_float32(blocks):
    return blocks.astype(jnp.float32)


# -- precision="mixed": phase 1 with float32 products --------------------------------------------
# The noise of a float32 product. With the blocks and X rounded to float32 (unit roundoff
# u = 2^-24) and the (3w)-term row sums accumulated in float32, the product of a unit column x
# carries an error E x with ||E x|| <= (2 + 3w) u || |A| |x| || <= (2 + 3w) u ||A||_inf (worst
# case; A symmetric, so || |A| ||_2 <= ||A||_inf). Measured (LJ fcc, N = 108 and 864, cutoff
# 2.5 sigma, 55-79 blocks a row): ||E x|| = 0.9-1.1 u ||A||_inf on random unit columns and
# 0.42-0.46 u ||A||_inf on the softest eigenvectors: the rounding errors add at random, far below
# the worst case. ``jax_lobpcg`` measures it on its start block (``noise``: one float32 product
# beside the float64 one it makes anyway), an estimate of the real thing from above.
#
# Where phase 1 stops. The iteration with float32 products follows the float64 one residual for
# residual down to ~50 times that noise; below ~20 times it the residuals do not stall but GROW,
# geometrically (1.3-1.6x an iteration), whatever the noise's origin (measured at N = 108: float32
# rounding of X alone, or random noise of the same size added to float64 products, do the same;
# a float32 copy of the blocks used with float64 arithmetic, a fixed symmetric perturbation,
# does not). So phase 1 ends at the first of: every wanted residual norm (absolute) within
# NOISE_MARGIN times the noise (columns reaching it earlier are locked, as converged ones are);
# the wanted columns' largest residual rising once it is below NOISE_WATCH times the noise;
# STALL_ITERATIONS iterations without a new low of it by STALL_FACTOR; the usual test passed.
# Measured, tol 1e-12 at N = 108 (mass-weighted) and 1e-10 at N = 2048: 29 + 12 and 21 + 11
# iterations (float32 + float64) against 41 and 31 in float64 alone; a margin of 2 (the
# divergence reached first, caught by the stall test) took 37 + 16.
NOISE_MARGIN = 50.0
NOISE_WATCH = 1000.0
STALL_ITERATIONS = 8
STALL_FACTOR = 0.7


class LowPrecisionProduct:
    """X -> A X with A's padded block rows rounded to float32 on the device (the products in
    float32; X and the result float64): phase 1 of precision="mixed". ``release`` drops the
    float32 copy (half the float64 rows' size) when phase 1 ends. ``sign`` -1 gives -A X
    (which="highest")."""

    def __init__(self, blocks, cols, n_atoms: int):
        self.parts = (_to_float32(blocks), cols, n_atoms)
        self.sign = 1.0

    def __call__(self, X):
        blocks, cols, n_atoms = self.parts
        AX = ell_matmat(blocks, cols, X, n_atoms=n_atoms)
        return AX if self.sign == 1.0 else _scale(self.sign, AX)

    def release(self):
        self.parts = None


@dataclass
class MixedLobpcgInfo(LobpcgInfo):
    """LobpcgInfo with the share of phase 1 (float32 products) under precision="mixed"."""

    iterations_float32: int = 0
    matvecs_float32: int = 0
    noise: float = 0.0  # max ||E x|| measured on the start block (0: no phase 1)


# -- the algorithm --------------------------------------------------------------------------------
def jax_lobpcg(
    matmat,
    X0,
    k: int,
    *,
    Y=None,
    precond=None,
    tol: float = 1e-8,
    maxiter: int = 500,
    anorm=None,
    low=None,
    keep_low: bool = False,
    on_device: bool = False,
    callback=None,
    sharding=None,
    product_eps=None,
    decide=None,
):
    """Lowest ``k`` eigenpairs of a symmetric A restricted to the complement of span(Y), on the
    JAX device.

    Args:
        matmat: function (n, b) device array -> (n, b) device array, A @ X (float64).
        X0: (n, b) initial block (host or device), b >= k.
        k: wanted pairs.
        Y: (n, c) orthonormal constraint vectors (host or device), or None.
        precond: None or the parameters from ``device_preconditioner`` (applied on the device).
        tol, maxiter, anorm: as for mdhess/modes/_lobpcg.py's ``lobpcg`` (same convergence test).
        low: None, or a ``LowPrecisionProduct`` of the same A (precision="mixed"): phase 1
            iterates with its float32 products until the wanted residuals reach their noise
            (NOISE_MARGIN, above); phase 2 recomputes A X with ``matmat`` and goes on to the
            usual test. ``low.release()`` is called at the switch. Everything else (X, A X, the
            Rayleigh-Ritz, orthonormalisation, the preconditioner) is float64 in both phases.
            ``maxiter`` bounds both phases together.
        keep_low: leave ``low`` unreleased (it serves the next batch of ``batched_lobpcg``).
        on_device: return w and X as device arrays (else numpy).
        callback: None, or ``callback(iteration, converged, largest relative residual)`` after
            each iteration's convergence test (progress).
        sharding: None, or the ``jax.sharding.Sharding`` of the (n, .) arrays (rows split
            across devices; n a multiple of their number): X, A X, the search directions and
            the work buffers are made with it, and the jitted steps keep it (XLA partitions them).
        product_eps: as for mdhess/modes/_lobpcg.py's ``lobpcg`` (a float32 operator's products).
        decide: None, or ``decide(*host values) -> values`` applied to every host value the
            iteration branches on (ranks, the scale and noise, convergence flags, residual norms)
            before it branches: ``pair/_sharded.process_zero_decides`` where the products span
            several processes, so that every process runs the same steps.

    Returns:
        (w (k,), X (n, k), MixedLobpcgInfo).
    """
    # (eager JAX operations are avoided here: each compiles a small program of its own)
    n, b = np.shape(X0)
    if b < k:
        raise ValueError(f"jax_lobpcg: initial block has {b} columns < k = {k}")
    agreed = decide if decide is not None else process_zero_decides(None)  # None: as they are

    def rank_of(r) -> int:
        return int(agreed(int(r))[0])

    if isinstance(Y, jax.Array):  # already on the device (batched_lobpcg's locked modes)
        Yd = Y
    else:
        Yd = _put(np.zeros((n, 0)) if Y is None else np.asarray(Y, dtype=np.float64), sharding)
    rep = _replicated(sharding)
    X, rank = _init(_put(np.asarray(X0, dtype=np.float64), sharding), Yd)
    if rank_of(rank) < b:
        raise ValueError(f"jax_lobpcg: initial block has rank {int(rank)} < its width {b}")
    AX = matmat(X)
    nmv = b
    nmv1 = 0  # float32 products
    noise = 0.0
    if low is not None:  # the float32 product's error on this block (see NOISE_MARGIN)
        noise = float(agreed(float(_noise(AX, low(X))))[0])
        nmv += b
        nmv1 = b
    X, AX, w, wmax = _start(X, AX)
    scale = float(agreed(float(wmax))[0]) if anorm is None else float(anorm)
    attainable = attainable_residual(scale, n, product_eps)
    consts = _put(np.array([tol, scale, attainable], dtype=np.float64), rep)
    # phase 1: a wanted column whose residual is at the float32 noise counts as done (locked)
    consts_low = _put(np.array([tol, scale, max(attainable, NOISE_MARGIN * noise)]), rep)
    P = _put(np.zeros((n, b)), sharding)
    AP = _put(np.zeros((n, b)), sharding)
    # buffers that the steps' large intermediates are written into, again and again (see
    # _rayleigh_ritz)
    work = tuple(_put(np.zeros((n, 2 * b)), sharding) for _ in range(3))
    qbuf = _put(np.zeros((n, 2 * b)), sharding)
    pre = {} if precond is None else precond
    phase1 = low is not None
    product, cs = (low, consts_low) if phase1 else (matmat, consts)
    it = it1 = 0
    best, since, last = np.inf, 0, np.inf  # phase 1's exit tests
    nq = 1
    while it < maxiter:
        it += 1
        if it % REFRESH_EVERY == 0:
            X, AX, w, rank = _refresh(X, AX)
            if rank_of(rank) < b:
                break
        Q, W, AP_o, ok, res = _prepare(
            X, AX, w, P, AP, Yd, cs, pre, qbuf, k=k, precondition=precond is not None
        )
        ok_h, nq_h, res_h, w_h = agreed(*jax.device_get((ok, nq, res, w)))
        done = ok_h[:k].all() or int(nq_h) == 0
        if callback is not None:
            callback(it, int(ok_h[:k].sum()), float(res_h[:k].max()))
        if phase1:
            # the wanted columns' largest residual norm (res: relative to max(|w|, 1e-6 scale))
            worst = float(np.max(res_h[:k] * np.maximum(np.abs(w_h[:k]), 1e-6 * max(scale, 1e-300))))
            rising = last <= NOISE_WATCH * noise and worst > last
            best, since = (worst, 0) if worst < STALL_FACTOR * best else (best, since + 1)
            last = worst
            if done or worst <= NOISE_MARGIN * noise or rising or since >= STALL_ITERATIONS or it == maxiter:
                # phase 2: this iteration is done again with float64 products, from X with A X
                # recomputed in float64 (Rayleigh-Ritz on X) and P = 0. (Keeping P, with A P
                # recomputed, took as many iterations (41 at N = 108, 32 at N = 2048) for one
                # more product of the block.)
                phase1, product, cs = False, matmat, consts
                it1 = it - 1
                if not keep_low:
                    low.release()
                low = None
                qbuf = Q
                P = _put(np.zeros((n, b)), sharding)
                AP = _put(np.zeros((n, b)), sharding)
                X, AX, w, rank = _refresh(X, matmat(X))
                nmv += b
                nq = 1
                if rank_of(rank) < b:
                    break
                it -= 1
                continue
        if done:
            break
        AQW = product(W)
        nmv += b
        nmv1 += b if phase1 else 0
        X, AX, w, P, AP, nq, work = _rayleigh_ritz(X, AX, w, Q, AQW, AP_o, work)
        qbuf = Q  # no longer needed: the next Q is written into it
    if phase1:  # maxiter ended phase 1 (or a rank loss): the final test on float64 products
        it1 = it
        if not keep_low:
            low.release()
        X, AX, w, _ = _refresh(X, matmat(X))
        nmv += b
    res, ok = agreed(*jax.device_get(_final(X, AX, w, Yd, consts, k=k)))
    info = MixedLobpcgInfo(it, nmv, int(np.sum(ok[:k])), np.asarray(res[:k]), it1, nmv1, noise)
    if on_device:
        return w[:k], X[:, :k], info
    return to_host(w)[:k], to_host(X)[:, :k], info


# -- many modes in batches ---------------------------------------------------------------------------
@partial(jit, donate_argnames=("C",))
def _put_columns(C, X, at):
    return jax.lax.dynamic_update_slice(C, X, (0, at))


@partial(jit, static_argnames=("c",))
def _sorted_modes(C, w, c: int):
    order = jnp.argsort(w)
    return w[order], C[:, c:][:, order], order


def batched_lobpcg(matmat, n: int, k: int, batch: int, *, Y=None, precond=None, tol=1e-8, maxiter=500,
                   seed=0, low=None, callback=None, sharding=None, rows=None, product_eps=None,
                   decide=None):  # fmt: skip
    """The lowest ``k`` eigenpairs of A off span(Y), ``batch`` at a time: each batch is a
    ``jax_lobpcg`` of ``batch`` pairs (and its buffer columns) constrained off Y and off every
    pair locked by the batches before it, so the solver's own arrays are sized by ``batch``, not
    by ``k``. The locked pairs are one (n, c + k) device array (Y in its first c columns), filled
    batch by batch; its unfilled columns are zero, which the projection ignores.

    Each batch finds the lowest pairs of A on the complement of what is locked, i.e. the next
    ones up, to the same convergence test. A cluster of near-equal eigenvalues cut by a batch
    boundary is split between two batches (each keeps vectors of the cluster's invariant
    subspace); the pairs are sorted by eigenvalue at the end.

    Args:
        matmat, precond, tol, maxiter, low: as for ``jax_lobpcg`` (``maxiter`` bounds each batch;
            ``low`` serves every batch and is released at the end).
        n: rows of A; k: pairs wanted; batch: pairs a batch (1 <= batch < k).
        Y: (n, c) orthonormal constraint vectors, or None.
        seed: of the batches' random start blocks.
        callback: None, or ``callback(batch index, iteration, converged, largest relative
            residual)`` after each iteration of each batch (progress).
        sharding: as for ``jax_lobpcg`` (the locked pairs are split the same way).
        rows: None, or (n,) a row order the problem is given in: each start block is drawn as
            without it and its rows taken in this order (the same start, permuted).
        decide: as for ``jax_lobpcg`` (every batch).

    Returns:
        (w (k,), X (n, k), MixedLobpcgInfo summed over the batches) with numpy arrays.
    """
    c = 0 if Y is None else int(np.shape(Y)[1])
    C = np.zeros((n, c + k))
    if c:
        C[:, :c] = np.asarray(Y, dtype=np.float64)
    C = _put(C, sharding)
    rng = np.random.default_rng(seed)
    ws, its, nmv, conv, res, it1, nmv1, noise = [], 0, 0, 0, [], 0, 0, 0.0
    try:
        for lo in range(0, k, batch):
            m = min(batch, k - lo)
            b = min(solver_columns(m), n - c - lo)
            X0 = rng.standard_normal((n, b))
            if rows is not None:
                X0 = X0[rows]
            cb = None if callback is None else partial(callback, lo // batch)
            w, X, li = jax_lobpcg(matmat, X0, m, Y=C, precond=precond, tol=tol, maxiter=maxiter, low=low,
                                  keep_low=True, on_device=True, callback=cb, sharding=sharding,
                                  product_eps=product_eps, decide=decide)  # fmt: skip
            C = _put_columns(C, X, c + lo)
            ws.append(w)
            its, nmv, conv = its + li.iterations, nmv + li.matvecs, conv + li.converged
            it1, nmv1, noise = it1 + li.iterations_float32, nmv1 + li.matvecs_float32, max(noise, li.noise)
            res.append(li.residuals)
    finally:
        if low is not None:
            low.release()
    w, X, order = _sorted_modes(C, jnp.concatenate(ws), c=c)
    del C
    res = np.concatenate(res)[np.asarray(order)]
    return to_host(w), to_host(X), MixedLobpcgInfo(its, nmv, conv, res, it1, nmv1, noise)


# -- the operator and preconditioner of a HessianInput -------------------------------------------------
@jit
def _scale(s, X):
    return s * X.astype(jnp.float64)


def device_matmat(
    inp, masses, A_host=None, *, columns: int = 32, precision: str = "float64", reserve: int = 0
):
    """(matmat, description, low): X -> A X on the device for A = M^-1/2 H M^-1/2.

    A matrix (or ``A_host``, its mass-weighted CSR when already made) becomes padded block rows;
    an operator keeps its own product, mass-weighted around it. A BSR matrix of 3x3 blocks is
    read in place, and on a CPU backend its padded copy is skipped when it would not fit beside
    the solver's vectors (``columns`` wide): the products then run on its blocks in place
    (``BlockRowProduct``, threads over block rows).

    ``low``: for precision="mixed" on padded block rows, the ``LowPrecisionProduct`` of phase 1
    (a float32 copy of the rows made on the device: 1.5x the float64 rows' memory until the
    switch, which stays below the 2x that ``ell_fits`` plans for the build); else None (the
    operator's own product and the host product are float64 only). ``reserve``: bytes held
    besides (the locked pairs of a batched solve), kept out of the padded rows' room."""
    mixed = precision == "mixed"
    lean = getattr(inp, "blocks3", None) is not None
    if lean and A_host is None:
        B = inp.blocks3
        s_atom = None if np.all(masses == 1.0) else 1.0 / np.sqrt(masses)
        fits, why = ell_fits(B, columns, reserve=reserve)
        if fits:
            blocks, cols, n_atoms = ell_from_sparse(B, columns=columns, row_scale=s_atom)

            def matmat(X):
                return ell_matmat(blocks, cols, X, n_atoms=n_atoms)

            low = LowPrecisionProduct(blocks, cols, n_atoms) if mixed else None
            return matmat, f"padded 3x3 block rows ({cols.shape[-1]} per atom)", low
        host = inp.matmat(masses, columns)
        in_place = isinstance(host, BlockRowProduct)
        where = "the BSR blocks in place" if in_place else "the mass-weighted CSR"
        buf = {}

        def matmat(X):
            Xh = np.asarray(X)
            if not in_place or Xh.ndim != 2:
                return jax.device_put(host(Xh))
            out = buf.get(Xh.shape)
            if out is None:  # one buffer a shape (the block, the start block): reused every product
                out = buf[Xh.shape] = np.empty(Xh.shape)
            Y = jax.device_put(host(Xh, out=out))  # a copy (device_put on a CPU never aliases)
            return Y.block_until_ready()  # the copy made before the buffer is written again

        return matmat, f"{where}, on the host ({why})", None
    if inp.is_matrix or A_host is not None:
        A = inp.mass_weighted_csr(masses) if A_host is None else A_host
        blocks, cols, n_atoms = ell_from_sparse(A)

        def matmat(X):
            return ell_matmat(blocks, cols, X, n_atoms=n_atoms)

        low = LowPrecisionProduct(blocks, cols, n_atoms) if mixed else None
        return matmat, f"padded 3x3 block rows ({cols.shape[-1]} per atom)", low
    op = inp.H
    s = np.repeat(1.0 / np.sqrt(masses), 3)[:, None]
    mesh = getattr(op, "mesh", None)
    # an operator sharded across processes: the scaling on its devices, like the vectors
    s = replicate(s, mesh) if mesh is not None and mesh.is_multi_process else jax.device_put(s)

    def matmat(X):
        return _scale(s, op @ _scale(s, X))

    return matmat, "the operator's own product", None


ELL_MEMORY_SHARE = 0.8  # of the available memory, for the padded rows, their copy and the vectors


def ell_fits(B, columns: int, reserve: int = 0):
    """(fits, why): whether the padded block rows of B (built on the host, then copied to the
    device: twice their size at the peak) and the solver's vectors fit in the available memory
    less ``reserve``. Always True off the CPU backend (the products must run on the device
    there; ``check_solver_memory`` has counted them)."""
    if jax.default_backend() != "cpu":
        return True, ""
    from ..pair._planner import memory_limit

    c, n_chunks, w = ell_shape(B, columns=columns)
    ell = n_chunks * c * 9 * w * 8
    vectors = solver_bytes(B.shape[0], columns)
    avail = memory_limit() - reserve
    need = 2 * ell + vectors
    if need <= ELL_MEMORY_SHARE * avail:
        return True, ""
    return False, (
        f"padded rows {ell / 2**30:.2f} GiB twice + vectors {vectors / 2**30:.2f} GiB > "
        f"{ELL_MEMORY_SHARE:.0%} of {avail / 2**30:.2f} GiB available"
    )


LOCKED_BLOCKS = 3
"""(n, k) float64 arrays that solving in batches holds besides a batch's solver: the locked
pairs, their sorted copy and the copy returned to the host."""

BATCH_MIN = 16
"""Fewest pairs a batch: below it the solver's buffer columns and the projection off the locked
pairs outweigh the batch itself."""


def check_solver_memory(n: int, columns: int, kv: int, reserve: int = 0, shards: int = 1) -> int:
    """The pairs a batch of the solve (``kv``: all in one block), from the memory available (or
    $MDHESS_MEMORY_LIMIT) less ``reserve`` (the operator's padded rows where they must be on the
    device; ``shards``: devices the solver's rows are split across), before anything of the size
    of the problem is allocated: all ``kv``
    where their block's SOLVER_BLOCKS (n, columns) arrays fit; else the largest batch whose
    solver fits beside the LOCKED_BLOCKS (n, kv) arrays of the locked pairs.

    Raises:
        MemoryPlanError: not even a batch of BATCH_MIN pairs fits.
    """
    from .._errors import MemoryPlanError
    from ..pair._planner import format_bytes, memory_limit

    limit = memory_limit() - reserve
    if solver_bytes(n, columns, shards) <= limit:
        return kv
    room = limit - LOCKED_BLOCKS * n * kv * 8 // shards
    batch = kv - 1
    while batch >= BATCH_MIN and solver_bytes(n, solver_columns(batch), shards) > room:
        batch = batch * 3 // 4 if batch > 64 else batch - 1
    if batch >= BATCH_MIN:
        return batch
    need = solver_bytes(n, columns, shards)
    least = LOCKED_BLOCKS * n * kv * 8 // shards + solver_bytes(n, solver_columns(BATCH_MIN), shards)
    raise MemoryPlanError(
        f"normal_modes(solver='jax-lobpcg'): {kv} pairs of {n} degrees of freedom keep {columns} "
        f"columns in about {SOLVER_BLOCKS} arrays of ({n}, {columns}) float64: about {format_bytes(need)} "
        f"in one block, and at least {format_bytes(least)} in batches of {BATCH_MIN} (the locked pairs: "
        f"{LOCKED_BLOCKS} arrays of ({n}, {kv})); more than the {format_bytes(limit)} available (free "
        "memory, or $MDHESS_MEMORY_LIMIT); ask for fewer modes (k) or free memory"
    )


def device_lowest_preconditioner(inp, masses, matmat, *, A_host, positions, cell, seed: int, decide=None):
    """(params, description): the device preconditioner of the lowest pairs of A: block Jacobi,
    plus the additive trilinear coarse grid when positions are known; built from A - sigma I
    (sigma below the spectrum) when A is indefinite, as in mdhess/modes/_precond.py. ``decide``:
    as for ``jax_lobpcg`` (whether sigma is needed: it takes products, collectives where the
    operator spans processes)."""
    from ._input import csr_diagonal_blocks

    agreed = decide if decide is not None else process_zero_decides(None)

    n = inp.n3
    D = csr_diagonal_blocks(A_host) if A_host is not None else inp.diagonal_blocks(masses)
    if positions is not None:
        sqrt_m = np.sqrt(masses)
        P = trilinear_prolongator(
            positions, cell, sqrt_m, coarse_spacing(positions, cell, masses.size), rotations=False
        )
        Ac0 = inp.coarse_matrix(masses, P) if A_host is None else (P.T @ (A_host @ P)).toarray()
        Ac0 = (Ac0 + Ac0.T) / 2
        PtP = (P.T @ P).toarray()

    def host_matmat(X):
        return np.asarray(matmat(jax.device_put(np.asarray(X, dtype=np.float64))))

    def below_spectrum():
        if A_host is not None:
            bound = float(abs(A_host).sum(axis=1).max())
        else:
            bound = inp.abs_row_sum_max(masses) if getattr(inp, "blocks3", None) is not None else None
        return shift_below_spectrum(host_matmat, n, seed, bound)

    def build(shift, indefinite_ok):
        Ds = D - shift * np.eye(3) if shift else D
        if positions is None:
            return device_preconditioner(Ds)
        Ac = Ac0 - shift * PtP if shift else Ac0
        return device_preconditioner(Ds, (P, coarse_inverse(Ac, indefinite_ok=indefinite_ok)))

    shift = float(agreed(below_spectrum())[0]) if agreed(blocks_indefinite(D))[0] else 0.0
    try:
        params, failed = build(shift, indefinite_ok=bool(shift)), False
    except np.linalg.LinAlgError:
        params, failed = None, True
    if agreed(failed)[0]:
        shift = float(agreed(below_spectrum())[0])
        params = build(shift, indefinite_ok=True)
    if positions is not None:
        description = (
            f"two-level on the device (block Jacobi + {P.shape[1] // 3}-node trilinear coarse grid, additive)"
        )
    else:
        description = "block Jacobi on the device (pass positions= for the two-level preconditioner)"
    if shift:
        description += f", of A - sigma I with sigma = {shift:.6g} (indefinite matrix)"
    return params, description


# -- vectors split across the devices of a sharded operator ---------------------------------------
def _spatial_rows(op, masses, precond, Y, *, sign: float):
    """(matmat, precond, Y, sharding, n_pad, rows): the solve moved into a sharded operator's
    own split layout (``ShardedHessianOperator.mv_split``): rows in its spatial order, padding
    atoms last, split over its devices exactly as its block rows, so each product is its halo
    exchange alone (no gather of the vectors, no permutation). ``rows``: (n_pad,) new row ->
    row of the padded problem in atom order (the start block, the constraints and the
    preconditioner are permuted with it; the result is permuted back). ``sign``: -1 for the
    highest modes (the product negated)."""
    n, c = Y.shape
    n_pad = 3 * op.n_pad
    pad = n_pad - n
    mesh, sharding = op.mesh, op.split_sharding
    atoms = np.concatenate([op.perm, np.arange(n // 3, n_pad // 3)])
    rows = (3 * atoms[:, None] + np.arange(3)).ravel()
    back = np.argsort(rows)
    Yp = np.zeros((n_pad, c + pad))
    Yp[:n, :c] = Y
    Yp[n + np.arange(pad), c + np.arange(pad)] = 1.0
    s = np.ones(n_pad)
    s[:n] = np.repeat(1.0 / np.sqrt(masses), 3)
    s = s[rows][:, None]
    s_in, s_out = put_global(s, sharding), put_global(sign * s, sharding)

    def mm(X):
        return _scale(s_out, op.mv_split(_scale(s_in, X)))

    if precond is not None:
        # placed once on the operator's devices: the block-Jacobi blocks and the prolongator's
        # rows split like the vectors' rows (applied where they are), the prolongator's
        # transpose and the coarse inverse replicated (else each step would copy them over)
        precond = dict(precond)
        dinv = to_host(precond["dinv"])
        dinv = np.concatenate([dinv, np.tile(np.eye(3), (pad // 3, 1, 1))])[atoms]
        precond["dinv"] = put_global(dinv, sharding)
        if "p" in precond:  # prolongator: one row a degree of freedom; its transpose: columns
            cols, vals = (to_host(a) for a in precond["p"])
            cols = np.concatenate([cols, np.zeros((pad, cols.shape[1]), cols.dtype)])[rows]
            vals = np.concatenate([vals, np.zeros((pad, vals.shape[1]), vals.dtype)])[rows]
            precond["p"] = (put_global(cols, sharding), put_global(vals, sharding))
            cols_t, vals_t = (to_host(a) for a in precond["pt"])
            precond["pt"] = (replicate(back[cols_t].astype(cols_t.dtype), mesh), replicate(vals_t, mesh))
            precond["ac_inv"] = replicate(precond["ac_inv"], mesh)
    return mm, precond, Yp[rows], sharding, n_pad, rows


PROCESS_SPLIT = "auto"
"""On an operator sharded across processes, whether the JAX LOBPCG splits its vectors' rows
across every process's devices: "auto" where each process could not hold the whole vectors of
one block (``check_solver_memory`` with one shard); True always; False never (each process
keeps the whole vectors and only the products are shared). Whole vectors where they fit: the
split pays a collective across processes in every step of the iteration, twice the time of
the whole vectors with two CPU processes over Gloo on one machine (N = 1372, lowest 20: 13.4-14.0
s against 6.8-7.0 s; docs/scaling.md); on GPUs over NCCL this was not measured."""


def _split_across_processes(n: int, columns: int, kv: int, reserve: int) -> bool:
    if PROCESS_SPLIT != "auto":
        return bool(PROCESS_SPLIT)
    from .._errors import MemoryPlanError

    try:
        return check_solver_memory(n, columns, kv, reserve=reserve, shards=1) < kv
    except MemoryPlanError:
        return True


def _agreed_plan(n: int, columns: int, kv: int, reserve: int, mesh) -> tuple[bool, int]:
    """(split, batch) for a solve on an operator sharded across processes, the same in every
    process: each decides from its own host's memory (which differs between hosts), so the
    decisions are exchanged (``exchange_outcome``): the vectors are split where any process
    needs it, and the batch is the smallest any process can hold; a process that cannot hold
    even the smallest batch makes every process raise its MemoryPlanError. Different choices
    would run different programs, and the processes would wait for each other in them."""
    from ..pair._sharded import exchange_outcome

    call = "normal_modes(solver='jax-lobpcg')"
    _, tags = exchange_outcome(call, lambda: _split_across_processes(n, columns, kv, reserve), lambda s: bytes([s]))
    split = bool(tags[:, 0].any())
    shards = int(mesh.devices.size) if split else 1
    _, tags = exchange_outcome(
        call, lambda: check_solver_memory(n, columns, kv, reserve=reserve, shards=shards), lambda k: int(k).to_bytes(8, "little")
    )  # fmt: skip
    return split, min(int.from_bytes(bytes(t[:8]), "little") for t in tags)


# -- the driver ---------------------------------------------------------------------------------
def solve_jax_lobpcg(inp, masses, Y, req, *, kv: int):
    """(w, V, info): the ``kv`` lowest or highest pairs of Q A Q on the complement of Y by the JAX
    LOBPCG (arguments as mdhess/modes/_lobpcg.py's ``solve_lobpcg``; the same warning)."""
    # jaxlib's CPU eigh calls scipy's OpenBLAS LAPACK: the small Rayleigh-Ritz problems run up to
    # 100x slower with its threads on a loaded 2-core machine (0.7 ms vs 120 ms for 81 x 81)
    with blas_single_thread():
        return _solve(inp, masses, Y, req, kv=kv)


def _solve(inp, masses, Y, req, *, kv: int):
    n = inp.n3
    positions = req.positions if req.positions is not None else inp.positions
    lowest = req.which == "lowest"
    b = min(solver_columns(kv), n - Y.shape[1])
    # (a BSR matrix of 3x3 blocks is read in place: no CSR, no scaled copy; docs/scaling.md)
    lean = getattr(inp, "blocks3", None) is not None
    reserve = 0
    if lean and jax.default_backend() != "cpu":  # its padded rows go to the device (and a float32 copy)
        c_atoms, n_chunks, width = ell_shape(inp.blocks3, columns=b)
        reserve = int(n_chunks * c_atoms * 9 * width * 8 * (1.5 if req.precision == "mixed" else 1.0))
    mesh = getattr(getattr(inp, "H", None), "mesh", None)  # an operator sharded across devices
    # the solver's vectors split across its devices, in this process or, where whole vectors
    # would not fit in each process (PROCESS_SPLIT), across processes (then every array of the
    # solve is a global one on those devices; the result is gathered)
    local = mesh is not None and all(d.process_index == jax.process_index() for d in mesh.devices.flat)
    # kv: one block; fewer: batches (batched_lobpcg)
    if mesh is not None and not local:  # every process must take the same decisions
        split, batch = _agreed_plan(n, b, kv, reserve, mesh)
    else:
        split = mesh is not None
        batch = check_solver_memory(n, b, kv, reserve=reserve, shards=int(mesh.devices.size) if split else 1)
    shards = int(mesh.devices.size) if split else 1
    locked = 0
    if batch < kv:
        b = solver_columns(batch)
        locked = LOCKED_BLOCKS * n * kv * 8
    # the mass-weighted matrix on the host: given entry by entry, or (for the coarse grid)
    # assembled transiently from an operator's blocks, as the numpy path does
    A_host = None
    if not lean and (inp.is_matrix or (lowest and positions is not None)):
        A_host = inp.mass_weighted_csr(masses)
    if A_host is not None and not scipy.sparse.issparse(A_host):
        A_host = scipy.sparse.csr_matrix(A_host)
    matmat, product, low = device_matmat(
        inp, masses, A_host if inp.is_matrix else None, columns=b, precision=req.precision, reserve=locked
    )
    info = {"product": product, "device": str(jax.devices()[0])}
    if low is not None:
        info["precision"] = "mixed"
    elif req.precision == "mixed":
        info["precision"] = f"float64 (precision='mixed' needs padded block rows; the product: {product})"
    else:
        info["precision"] = "float64"
    if inp.product_eps > np.finfo(np.float64).eps:  # a float32 operator: its products limit the residuals
        info["precision"] = "float32 products (the operator's dtype); residuals down to their rounding"
    # every branch of the solve on process 0's numbers where the products span processes
    decide = process_zero_decides(mesh)
    precond = None
    if lowest:
        precond, info["preconditioner"] = device_lowest_preconditioner(
            inp, masses, matmat, A_host=A_host, positions=positions, cell=req.cell, seed=req.seed, decide=decide
        )
        mm = matmat
    else:
        info["preconditioner"] = "none"

        def mm(X):
            return _scale(-1.0, matmat(X))

        if low is not None:
            low.sign = -1.0

    n_out = n
    sharding = rows = None
    if shards > 1:
        where = "" if local else f" of {jax.process_count()} processes"
        # the operator's own layout: its halo products, nothing gathered
        mm, precond, Y, sharding, n, rows = _spatial_rows(inp.H, masses, precond, Y, sign=1.0 if lowest else -1.0)
        info["vectors"] = (
            f"rows split across {shards} devices{where} ({(n - n_out) // 3} padding atoms; in the operator's "
            f"spatial order; products by halo exchange, {inp.H.halo_rows} rows)"
        )
    elif mesh is not None and not local:
        info["vectors"] = f"whole in each of the {jax.process_count()} processes (they fit: PROCESS_SPLIT)"
    n_batches = -(-kv // batch)
    with Status(req.progress, f"normal_modes (jax-lobpcg, {kv} modes)", total=req.maxiter * n_batches) as st:
        if batch < kv:
            info["batches"] = n_batches
            info["batch"] = batch

            def progress(i, it, done, res):
                wanted = min(batch, kv - i * batch)
                st.step(1, f"batch {i + 1}/{n_batches}: {done}/{wanted} converged, residual {res:.1e}")

            w, X, li = batched_lobpcg(
                mm, n, kv, batch, Y=Y, precond=precond, tol=req.tol, maxiter=req.maxiter, seed=req.seed,
                low=low, callback=progress if req.progress else None, sharding=sharding, rows=rows,
                product_eps=inp.product_eps, decide=decide,
            )  # fmt: skip
        else:

            def progress(it, done, res):
                st.step(1, f"{done}/{kv} converged, residual {res:.1e}")

            X0 = np.random.default_rng(req.seed).standard_normal((n, b))
            if rows is not None:  # the same start block as in atom order
                X0 = X0[rows]
            w, X, li = jax_lobpcg(mm, X0, kv, Y=Y, precond=precond, tol=req.tol, maxiter=req.maxiter, low=low,
                                  callback=progress if req.progress else None, sharding=sharding,
                                  product_eps=inp.product_eps, decide=decide)  # fmt: skip
    # (padding rows of a sharded solve dropped; the operator's spatial order undone)
    X = X[:n_out] if rows is None else X[np.argsort(rows)[:n_out]]
    if not lowest:
        w = -w[::-1]
        X = X[:, ::-1]
    info.update(
        iterations=li.iterations,
        matvecs=li.matvecs,
        converged=li.converged,
        max_residual=float(li.residuals.max()),
    )
    if info["precision"] == "mixed":
        info.update(
            iterations_float32=li.iterations_float32,
            iterations_float64=li.iterations - li.iterations_float32,
            matvecs_float32=li.matvecs_float32,
            float32_noise=li.noise,
        )
    if li.converged < kv:
        warnings.warn(
            f"normal_modes: LOBPCG converged {li.converged} of {kv} modes in {li.iterations} iterations "
            f"(largest relative residual {li.residuals.max():.2g}); raise maxiter or loosen tol",
            RuntimeWarning,
            stacklevel=6,  # normal_modes' caller (via solve_jax_lobpcg, solve_once, vibrational_modes)
        )
    return w, X, info

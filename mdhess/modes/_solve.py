"""The vibrational pairs of Q A Q (A = M^-1/2 H M^-1/2, Q = I - Y Y^T the projection off the
rigid-body directions Y) by one of the three solvers: dense LAPACK ``eigh`` (here), shift-invert
Lanczos (mdhess/modes/_shift_invert.py) or LOBPCG (mdhess/modes/_lobpcg.py).

``vibrational_modes`` runs the chosen solver for as many pairs as the request needs and returns
them with the eigenvalue scale (the largest |diagonal entry| of A) used by the zero-mode test.
"""

import numpy as np
import scipy.linalg

from .._errors import InputError
from .._progress import Status
from ._lobpcg import solve_lobpcg
from ._shift_invert import solve_shift_invert


def solve_dense(A, Y, kv, which):
    """(w, V): the ``kv`` lowest or highest pairs of Q A Q on the complement of Y by LAPACK (all
    pairs, or an index subset with the MRRR driver)."""
    n = A.shape[0]
    c = Y.shape[1]
    if c:
        # (I - YY^T) A (I - YY^T) + beta YY^T: the projection, with the rigid directions moved above
        # the spectrum (beta = 2 ||A||_inf >= 2 ||A||_2, in the matrix's units), written as ONE
        # symmetric rank-2c update A - Y Z^T - Z Y^T with Z = AY - Y (Y^T A Y) / 2 - beta Y / 2
        # (fewer n x n temporaries and passes than the products written out: docs/benchmarks.md)
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


def solve_once(inp, masses, Y, req, *, kv: int):
    """(w, V, info, scale): ``kv`` pairs of Q A Q on the complement of Y by ``req.solver``.

    Args:
        inp: the HessianInput (mdhess/modes/_input.py).
        masses: (N,) masses.
        Y: (3N, c) orthonormal rigid-body directions.
        req: the SolveRequest.
        kv: pairs wanted.
    """
    n3 = inp.n3
    c = Y.shape[1]
    if req.solver == "dense":
        with Status(req.progress, f"normal_modes (dense, {kv} modes)") as st:
            st.phase(f"mass-weighted dense matrix ({n3} x {n3})")
            A = inp.mass_weighted_dense(masses)
            scale = float(np.abs(np.diag(A)).max()) or 1.0
            st.phase(f"LAPACK eigh ({n3} x {n3})")
            w, V = solve_dense(A, Y, kv, req.which)
        return w, V, {}, scale
    A_csr = None
    if req.solver == "shift-invert":
        A_csr = inp.mass_weighted_csr(masses)
        scale = float(np.abs(A_csr.diagonal()).max()) or 1.0
    else:  # LOBPCG: the scale from the diagonal blocks (no CSR assembled for it)
        scale = float(np.abs(np.einsum("naa->na", inp.diagonal_blocks(masses))).max()) or 1.0
    if kv + c > n3 - 2:
        raise InputError(
            f"normal_modes(k={req.k}) leaves too few other modes for solver={req.solver!r} ({n3} degrees "
            "of freedom); use solver='dense'"
        )
    if kv == 0:
        return np.zeros(0), np.zeros((n3, 0)), {}, scale
    if req.solver == "shift-invert":
        w, V, info = solve_shift_invert(
            A_csr, Y, kv, req.which, req.sigma, scale=scale, tol=req.tol, seed=req.seed, progress=req.progress
        )
    elif req.solver == "jax-lobpcg":
        from ._jax_lobpcg import solve_jax_lobpcg  # imports JAX's linear algebra on first use

        w, V, info = solve_jax_lobpcg(inp, masses, Y, req, kv=kv)
    else:
        w, V, info = solve_lobpcg(inp, masses, Y, req, kv=kv)
    return w, V, info, scale


def vibrational_modes(inp, masses, Y, req):
    """(w, V, info, scale): the vibrational pairs that ``req.k`` modes (projected ones included)
    need, by ``req.solver``.

    For "lowest", k - c pairs (c = Y's columns) suffice unless more than k - c of them are
    negative: then the k lowest of the projected spectrum are imaginary and zero modes, and the
    solve is redone for k pairs.
    """
    c = Y.shape[1]
    k, n3 = req.k, inp.n3
    kv = min(k if req.which == "highest" or k <= c else k - c, n3 - c)
    while True:
        w, V, info, scale = solve_once(inp, masses, Y, req, kv=kv)
        if req.which == "highest" or kv >= min(k, n3 - c) or (w.size and w[-1] >= 0):
            return w, V, info, scale
        kv = min(k, n3 - c)

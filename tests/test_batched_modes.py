"""Many modes in batches (issue 14, item 6: the lowest 1000 modes of a 10^6-atom glass need
~480 GB as one LOBPCG block). When the block of k pairs does not fit in the memory available,
the JAX LOBPCG solves batches of pairs, each constrained off the pairs locked before it
(``batched_lobpcg``), with memory for the batch and the locked pairs only.

References: dense ``eigh`` of the same matrix. Tolerances: the solves run at tol=1e-12, whose
test bounds the relative eigenvalue error by ~tol (Kato-Temple); 1e-9 relative leaves three
orders of margin. Subspaces by their largest principal angle where the spectrum has a gap after
mode k (sin angle <= residual / gap, Davis-Kahan).
"""

import os
import sys

import numpy as np
import pytest

import mdhess
import mdhess.modes._jax_lobpcg as jl
from mdhess.modes._massweight import mass_weight

sys.path.insert(0, os.path.dirname(__file__))
from test_jax_lobpcg import sin_angle  # noqa: E402
from test_lean_bsr_modes import fcc, lj_system  # noqa: E402


@pytest.fixture(scope="module")
def lj256():
    return lj_system(4)


def test_batches_equal_dense_eigh(lj256, monkeypatch):
    """k = 100 of 768 under a memory limit of half the one-block solver: three batches; the
    modes equal dense eigh's; mass-weighted orthonormal; residuals of the mass-weighted matrix."""
    R, box, B, m = lj256
    k = 100
    ref = mdhess.normal_modes(B.toarray(), m, k=k + 1, solver="dense", box=box, positions=R)
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", str(jl.solver_bytes(B.shape[0], jl.solver_columns(k - 3)) // 2))
    nm = mdhess.normal_modes(B, m, k=k, positions=R, box=box, solver="jax-lobpcg", tol=1e-12)
    assert nm.info["batches"] == 3 and nm.info["batch"] == 35
    assert nm.info["converged"] == k - 3
    np.testing.assert_allclose(nm.eigenvalues[3:], ref.eigenvalues[3:k], rtol=1e-9)
    assert np.all(np.diff(nm.eigenvalues) >= 0)
    V = nm.vectors
    assert np.abs(V.T @ V - np.eye(k)).max() < 1e-10
    A = mass_weight(B, m).tocsr()
    Vv, w = V[:, 3:], nm.eigenvalues[3:]
    assert (np.linalg.norm(A @ Vv - Vv * w, axis=0) / w).max() < 1e-5
    w_ref = ref.eigenvalues
    gap = (w_ref[k] - w_ref[k - 1]) / w_ref[k - 1]
    if gap > 1e-3:  # (fcc 4^3: a gap after mode 100 or not, by the rattle)
        assert sin_angle(ref.vectors[:, :k], V) < 1e-5 / gap


def test_cluster_cut_by_a_batch_boundary():
    """A 6-fold cluster (modes 14-19) cut by the first batch's end (16): its two parts come from
    two batches, and together span the cluster's eigenspace."""
    rng = np.random.default_rng(3)
    n, k, batch = 400, 40, 16
    d = np.sort(rng.uniform(1.0, 10.0, n))
    d[14:20] = d[14]  # exactly degenerate
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * d) @ Q.T
    A = (A + A.T) / 2

    def matmat(X):
        return jl.jax.device_put(A) @ X

    w, X, info = jl.batched_lobpcg(matmat, n, k, batch, tol=1e-12, maxiter=300, seed=0)
    np.testing.assert_allclose(w, d[:k], rtol=1e-9)
    assert info.converged == k
    assert np.abs(X.T @ X - np.eye(k)).max() < 1e-10
    assert sin_angle(Q[:, 14:20], X[:, 14:20]) < 1e-6  # the cluster, from two batches
    assert sin_angle(Q[:, :k], X) < 1e-6


def test_batches_refused_when_even_the_smallest_does_not_fit(lj256, monkeypatch):
    R, box, B, m = lj256
    n3 = B.shape[0]
    least = jl.LOCKED_BLOCKS * n3 * 97 * 8 + jl.solver_bytes(n3, jl.solver_columns(jl.BATCH_MIN))
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", str(least - 1000))
    with pytest.raises(mdhess.MemoryPlanError, match=r"97 pairs.*in batches of 16.*MDHESS_MEMORY_LIMIT"):
        mdhess.normal_modes(B, m, k=100, positions=R, box=box, solver="jax-lobpcg")
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", str(least + 1000))  # just enough: batches of BATCH_MIN
    assert jl.check_solver_memory(n3, jl.solver_columns(97), 97) == jl.BATCH_MIN
    with pytest.raises(mdhess.MemoryPlanError):  # less the operator's rows where they must be on the device
        jl.check_solver_memory(n3, jl.solver_columns(97), 97, reserve=2000)


def test_mixed_precision_in_batches(lj256, monkeypatch):
    """precision="mixed" in batches: every batch starts on the float32 product (kept for all of
    them), then refines in float64 to the same test; the modes equal dense eigh's."""
    R, box, B, m = lj256
    k = 60
    ref = mdhess.normal_modes(B.toarray(), m, k=k, solver="dense", box=box, positions=R)
    monkeypatch.setattr(jl, "check_solver_memory", lambda n, columns, kv, reserve=0, shards=1: 20)  # batches of 20
    kw = dict(positions=R, box=box, solver="jax-lobpcg", tol=1e-12)
    nm = mdhess.normal_modes(B, m, k=k, precision="mixed", **kw)
    assert nm.info["batches"] == 3 and nm.info["precision"] == "mixed"
    assert nm.info["product"].startswith("padded")
    assert nm.info["iterations_float32"] >= 3 and nm.info["iterations_float64"] >= 3
    np.testing.assert_allclose(nm.eigenvalues[3:], ref.eigenvalues[3:], rtol=1e-9)


def test_auto_takes_the_batched_solver_where_one_block_does_not_fit(monkeypatch):
    """solver="auto" on a CPU picks the numpy LOBPCG at this size; where its one block of
    vectors (20 x 2592 x 50 x 8 = 20.7 MB here) exceeds the memory limit, the JAX one, which
    solves in batches, instead of running out of memory."""
    from mdhess.modes._input import hessian_input
    from mdhess.modes._nma import choose_solver

    R, box = fcc(6)
    B = mdhess.hessian(mdhess.lennard_jones(cutoff=2.2), R, box=box, format="bsr")
    inp = hessian_input(B)
    assert choose_solver("auto", inp, k=40, which="lowest", positions=R, cell=box) == "lobpcg"
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "10M")
    assert choose_solver("auto", inp, k=40, which="lowest", positions=R, cell=box) == "jax-lobpcg"
    assert choose_solver("lobpcg", inp, k=40, which="lowest", positions=R, cell=box) == "lobpcg"  # as asked


def test_highest_modes_in_batches(lj256, monkeypatch):
    """which="highest" runs the batches on -A: the highest 40 in batches of 20 equal dense eigh's."""
    R, box, B, m = lj256
    ref = mdhess.normal_modes(B.toarray(), m, k=40, which="highest", solver="dense", box=box, positions=R)
    monkeypatch.setattr(jl, "check_solver_memory", lambda n, columns, kv, reserve=0, shards=1: 20)
    kw = dict(positions=R, box=box, solver="jax-lobpcg", tol=1e-12)
    nm = mdhess.normal_modes(B, m, k=40, which="highest", **kw)
    assert nm.info["batches"] == 2
    np.testing.assert_allclose(nm.eigenvalues, ref.eigenvalues, rtol=1e-9)


def test_accelerator_plan_counts_the_padded_rows(lj256, monkeypatch):
    """Off the CPU the padded rows must go to the device: the plan counts them before sizing the
    solve. A limit that holds one block of vectors but not also the rows gives batches (the
    accelerator imitated by the backend's name; the products still run on this CPU)."""
    R, box, B, m = lj256
    k = 100
    n3 = B.shape[0]
    ref = mdhess.normal_modes(B.toarray(), m, k=k, solver="dense", box=box, positions=R)
    monkeypatch.setattr(jl.jax, "default_backend", lambda: "gpu")
    c, chunks, w = jl.ell_shape(B, columns=jl.solver_columns(k - 3))
    rows = chunks * c * 9 * w * 8
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", str(jl.solver_bytes(n3, jl.solver_columns(k - 3)) + rows // 2))
    nm = mdhess.normal_modes(B, m, k=k, positions=R, box=box, solver="jax-lobpcg", tol=1e-12)
    assert nm.info["batches"] >= 2 and nm.info["product"].startswith("padded")
    np.testing.assert_allclose(nm.eigenvalues[3:], ref.eigenvalues[3:], rtol=1e-9)

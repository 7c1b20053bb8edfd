"""Sharded operators (mdhess/pair/_sharded.py) and mdhess.distributed.

Several devices: the main pytest process has initialised JAX with one CPU device, so the checks
on 4 virtual CPU devices run in ONE subprocess (this file run as a script with ``--worker``,
XLA_FLAGS=--xla_force_host_platform_device_count=4) that prints its measured differences as JSON;
the tests below assert on them. Reference: the single-device operator and BSR of the same call
(themselves checked against dense AD in test_core.py).

Several hosts: two processes on 127.0.0.1 joined by mdhess.distributed.initialize (Gloo CPU
collectives) compute a sharded ``op @ v``, BSR and lowest modes, compared with one process.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import mdhess

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent

# float64: the sharded blocks are bit for bit the single-device ones (same formula, same
# orientation); products and diagonal blocks differ only by the summation order of <= ~40
# terms per row, so 1e-12 relative leaves a 1e4 margin over the observed ~1e-16.
TOL_F64 = 1e-12
# eigenvalues: both solves stop at the same residual tolerance (1e-10) from the same start;
# products that differ at 1e-16 move the converged values by far less than the 1e-10.
TOL_EIG = 1e-10
# subspaces: principal angles ~ residual / gap; with tol 1e-10 and gaps ~1e-1 (reported) the
# angles are ~1e-9; 1e-6 rad still fails for a wrong subspace (angles of order 1).
TOL_ANGLE = 1e-6
# float32: one product, rounding of float32 blocks summed in another order (~1e-7 relative)
TOL_F32 = 1e-5


# -- the systems (shared by the worker and the two-process run) ---------------------------------
def fcc(n_cells: int, a: float):
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    return ((g + base) * a).reshape(-1, 3)


def system(kind: str):
    """(potential, positions, box): a rattled LJ solid, rc = 2.5 sigma, ~100 atoms."""
    rng = np.random.default_rng(7)
    a = 1.5874
    pot = mdhess.lennard_jones(cutoff=2.5)
    if kind == "free":  # 98 atoms: N not a multiple of 4, so the last device holds padding rows
        R = fcc(3, a)
        R = R[np.argsort(np.linalg.norm(R - R.mean(0), axis=1), kind="stable")[:98]]
        return pot, R + 0.03 * rng.standard_normal(R.shape), None
    R = fcc(3, a)
    L = 3 * a
    if kind == "orthorhombic":
        return pot, R + 0.03 * rng.standard_normal(R.shape), np.array([L, L * 1.02, L * 0.98])
    cell = np.array([[L, 0, 0], [0.3 * L, L, 0], [0.2 * L, -0.25 * L, L]])  # triclinic, small: images summed
    frac = R / L
    return pot, frac @ cell + 0.03 * rng.standard_normal(R.shape), cell


KINDS = ("free", "orthorhombic", "triclinic")


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _modes_diff(m1, m2) -> dict:
    import scipy.linalg

    w1, w2 = np.asarray(m1.eigenvalues), np.asarray(m2.eigenvalues)
    ang = scipy.linalg.subspace_angles(np.asarray(m1.vectors), np.asarray(m2.vectors))
    return {"eig": float(np.abs(w1 - w2).max() / np.abs(w1).max()), "angle": float(np.max(ang))}


# -- the worker: every multi-device check in one process ------------------------------------------
def worker(full: bool) -> dict:
    """Every multi-device check; ``full`` adds the lowest modes on every box by LOBPCG (and by the
    dense solver on one), float32 and a 3-device split (the slow set); else the modes of the
    triclinic box by the dense solver only."""
    from jax.sharding import Mesh

    devs = jax.devices()
    assert len(devs) == 4, devs
    out = {}
    for kind in KINDS:
        pot, R, box = system(kind)
        v = np.random.default_rng(1).standard_normal((3 * len(R), 3))
        op1 = mdhess.hvp(pot, R, box=box)
        # a list of devices for one kind, a Mesh (with its own axis name) for the others
        where = devs if kind == "free" else Mesh(np.array(devs), ("shards",))
        op4 = mdhess.hvp(pot, R, box=box, devices=where)
        mf4 = mdhess.hvp(pot, R, box=box, devices=where, store_blocks=False)
        y1 = np.asarray(op1 @ v)
        res = {
            "mv": _rel(op4 @ v, y1),
            "mv_vector": _rel(op4 @ v[:, 0], y1[:, 0]),
            "mv_matrix_free": _rel(mf4 @ v, y1),
            "diagonal_blocks": _rel(op4.diagonal_blocks(), op1.diagonal_blocks()),
            "replicated": bool((op4 @ v).is_fully_replicated),
            "rows_split": [len(r) for r in op4.row_atoms],
            "entries_per_device": op4.entries_per_device.tolist(),
        }
        K1, i1, j1 = op1.blocks()
        K4, i4, j4 = op4.blocks()
        p = len(i4)
        res["blocks"] = _rel(K4, np.asarray(K1)[:p])
        res["block_indices_equal"] = bool((np.asarray(i1)[:p] == np.asarray(i4)).all() and (np.asarray(j1)[:p] == np.asarray(j4)).all())
        B1 = mdhess.hessian(pot, R, box=box, format="bsr")
        S = mdhess.hessian(pot, R, box=box, format="bsr", devices=where)
        B4 = S.to_bsr()
        res["bsr"] = _rel(B4.toarray(), B1.toarray())
        res["bsr_structure_equal"] = bool(
            B4.nnz == B1.nnz and (B4.indices == B1.indices).all() and (B4.indptr == B1.indptr).all()
        )
        res["bsr_type"] = type(S).__name__
        if full or kind == "triclinic":
            solver = "lobpcg" if full else "dense"  # dense: as_matrix through the sharded products
            m1 = mdhess.normal_modes(op1, k=10, solver=solver)
            m4 = mdhess.normal_modes(op4, k=10, solver=solver)
            res["modes"] = _modes_diff(m4, m1)
            res["modes_gap"] = float(np.diff(np.asarray(m1.eigenvalues)[m1.n_projected :]).min())
        if kind in ("free", "triclinic") or full:
            # the JAX LOBPCG with its vectors split across the devices (free: 98 atoms, 2 padding)
            kw = dict(k=10, solver="jax-lobpcg", positions=R, box=box, tol=1e-10)
            j1, j4 = mdhess.normal_modes(op1, **kw), mdhess.normal_modes(op4, **kw)
            res["modes_jax"] = _modes_diff(j4, j1)
            res["modes_jax_gap"] = float(np.diff(np.asarray(j1.eigenvalues)[j1.n_projected :]).min())
            res["modes_jax_vectors"] = j4.info.get("vectors")
        if full and kind == "orthorhombic":  # highest modes, and batches of 4 modes, split alike
            import mdhess.modes._jax_lobpcg as jl

            kw = dict(k=8, solver="jax-lobpcg", positions=R, box=box, tol=1e-10, which="highest")
            res["modes_jax_highest"] = _modes_diff(mdhess.normal_modes(op4, **kw), mdhess.normal_modes(op1, **kw))
            plan = jl.check_solver_memory
            jl.check_solver_memory = lambda *a, **k: 4
            try:
                kw = dict(k=10, solver="jax-lobpcg", positions=R, box=box, tol=1e-10)
                b4 = mdhess.normal_modes(op4, **kw)
                res["modes_jax_batched"] = _modes_diff(b4, mdhess.normal_modes(op1, **kw))
                res["modes_jax_batches"] = b4.info.get("batches")
            finally:
                jl.check_solver_memory = plan
        if full and kind == "orthorhombic":
            d1 = mdhess.normal_modes(op1, k=10, solver="dense")
            res["modes_dense"] = _modes_diff(mdhess.normal_modes(op4, k=10, solver="dense"), d1)
            o32 = mdhess.hvp(pot, R, box=box, dtype="float32", devices=devs)
            res["mv_float32"] = _rel(o32 @ v, mdhess.hvp(pot, R, box=box, dtype="float32") @ v)
            res["dtype32"] = str(o32.dtype)
            two = mdhess.hvp(pot, R, box=box, devices=devs[:3])  # 108 atoms over 3 devices
            res["mv_3_devices"] = _rel(two @ v, y1)
        out[kind] = res
    out["halo"] = _halo_checks(devs)
    try:
        mdhess.hvp(*system("free")[:2], devices=Mesh(np.array(devs).reshape(2, 2), ("a", "b")))
        out["mesh_rank2_error"] = None
    except mdhess.InputError as exc:
        out["mesh_rank2_error"] = str(exc)
    return out


def _halo_checks(devs) -> dict:
    """The split layout and its halo exchange on a crystal large beside its cutoff (864 atoms,
    rc = 1.5: first shell only), so each device's halo is a small part of the other rows."""
    from jax.sharding import NamedSharding, PartitionSpec

    rng = np.random.default_rng(5)
    L = 6 * 1.5874
    R = fcc(6, 1.5874) + 0.03 * rng.standard_normal((864, 3))
    box = np.array([L, L, L])
    pot = mdhess.lennard_jones(cutoff=1.5)
    op1 = mdhess.hvp(pot, R, box=box)
    v = rng.standard_normal((3 * len(R), 4))
    y1 = np.asarray(op1 @ v)
    res = {}
    for store in (True, False):
        op = mdhess.hvp(pot, R, box=box, devices=devs, store_blocks=store)
        p = op.partition
        x = op.to_split(v)
        y = op.mv_split(x)
        host = np.asarray(y).reshape(op.n_pad, 3, -1)
        tag = "stored" if store else "matrix_free"
        # the split result, in the spatial order, equals the single-device product permuted
        res[f"split_{tag}"] = _rel(host[: len(R)], y1.reshape(-1, 3, 4)[op.perm])
        res[f"split_padding_zero_{tag}"] = bool(np.all(host[len(R) :] == 0))
        res[f"split_shards_{tag}"] = sorted({tuple(sh.data.shape) for sh in y.addressable_shards})
        res[f"split_vector_{tag}"] = _rel(np.asarray(op.from_split(op.mv_split(op.to_split(v[:, 0])))), y1[:, 0])
    # v split by rows in atom order (neither replicated nor the split layout): op @ v
    vs = jax.device_put(v, NamedSharding(op.mesh, PartitionSpec(op.axis)))
    res["mv_row_sharded_input"] = _rel(op @ vs, y1)
    res["halo_rows"], res["n_loc"] = op.halo_rows, p.n_loc
    # a pair is one entry (applied to both rows) where one device owns both atoms, else two
    owner = p.inv // p.n_loc
    _, i4, j4 = op.blocks()  # every pair once (the list's order)
    res["entries_total"] = int(op.entries_per_device.sum())
    res["pairs"] = int(len(np.asarray(i4)))
    res["cross_pairs"] = int(np.sum(owner[np.asarray(i4)] != owner[np.asarray(j4)]))
    # each device receives exactly the rows its entries touch that other devices own
    need, got = [], []
    for d in range(p.n_dev):
        e = p.entries(d)
        col = e["col"][e["mask"]]
        need.append(sorted(set(col[col // p.n_loc != d].tolist())))
        rows = set()
        for s, m in p.halo:
            src = (d + s) % p.n_dev
            at = sum(h for t, h in p.halo if t < s)
            sent = p.send(src)[at : at + m] + src * p.n_loc
            rows |= set(sent[: len(p._needs[d, s])].tolist())
        got.append(sorted(rows))
    res["halo_exact"] = need == got
    for name, call in (("mv_split", lambda: op.mv_split(np.zeros(3))), ("to_split", lambda: op.to_split(np.zeros(5))),
                       ("from_split", lambda: op.from_split(np.zeros(3 * len(R))))):  # fmt: skip
        try:
            call()
            res[f"{name}_error"] = None
        except mdhess.InputError as exc:
            res[f"{name}_error"] = str(exc)
    kw = dict(k=10, solver="jax-lobpcg", positions=R, box=box, tol=1e-10)
    m1 = mdhess.normal_modes(op1, **kw)
    m4 = mdhess.normal_modes(op, **kw)  # matrix-free, its vectors in the split layout
    res["modes"] = _modes_diff(m4, m1)
    res["modes_vectors"] = m4.info.get("vectors")
    return res


def _run_worker(which: str) -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE), "--worker", which], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["seconds"] = time.perf_counter() - t
    return res


@pytest.fixture(scope="module")
def four_devices():
    """The default set: products, blocks, BSR on every box; dense-solver modes on the triclinic one."""
    return _run_worker("quick")


@pytest.fixture(scope="module")
def four_devices_full():
    """The slow set: LOBPCG modes on every box, dense solver, float32, 3 devices (~25 s CPU)."""
    return _run_worker("full")


@pytest.mark.parametrize("kind", KINDS)
def test_sharded_products_blocks_and_bsr_equal_single_device(four_devices, kind):
    r = four_devices[kind]
    for key in ("mv", "mv_vector", "mv_matrix_free", "diagonal_blocks", "blocks", "bsr"):
        assert r[key] <= TOL_F64, (key, r[key])
    assert r["block_indices_equal"] and r["bsr_structure_equal"] and r["replicated"]
    assert r["bsr_type"] == "ShardedHessianOperator"
    n = {"free": 98, "orthorhombic": 108, "triclinic": 108}[kind]
    assert sum(r["rows_split"]) == n and len(r["rows_split"]) == 4
    assert min(r["entries_per_device"]) > 0  # every device holds blocks


def _check_modes(r):
    assert r["modes"]["eig"] <= TOL_EIG, r["modes"]
    assert r["modes"]["angle"] <= TOL_ANGLE, (r["modes"], r["modes_gap"])


def test_sharded_lowest_modes_equal_single_device_triclinic(four_devices):
    _check_modes(four_devices["triclinic"])


@pytest.mark.slow  # the LOBPCG solves on every box: ~25 s CPU in a 4-device subprocess
@pytest.mark.parametrize("kind", KINDS)
def test_sharded_lowest_modes_equal_single_device(four_devices_full, kind):
    _check_modes(four_devices_full[kind])


@pytest.mark.parametrize("kind", ["free", "triclinic"])
def test_jax_lobpcg_vectors_split_across_devices(four_devices, kind):
    """normal_modes(solver="jax-lobpcg") on a sharded operator keeps its vectors' rows split
    across the 4 devices (98 atoms: padded to 100, the padding constrained away): the same modes
    as on one device."""
    r = four_devices[kind]
    pad = 2 if kind == "free" else 0
    assert r["modes_jax_vectors"].startswith(f"rows split across 4 devices ({pad} padding atoms; in the operator's spatial order; products by halo exchange")
    assert r["modes_jax"]["eig"] <= TOL_EIG, r["modes_jax"]
    assert r["modes_jax"]["angle"] <= TOL_ANGLE, (r["modes_jax"], r["modes_jax_gap"])


def test_halo_exchange_moves_only_the_rows_each_device_needs(four_devices):
    """op.mv_split: vectors split by rows in the operator's spatial order; each device receives
    just the other devices' rows its blocks touch (a small share of them here) and keeps its
    rows of the result; equal to the single-device product, stored and matrix-free; the JAX
    LOBPCG on that layout gives the single-device modes."""
    r = four_devices["halo"]
    for tag in ("stored", "matrix_free"):
        assert r[f"split_{tag}"] <= TOL_F64 and r[f"split_vector_{tag}"] <= TOL_F64, r
        assert r[f"split_padding_zero_{tag}"]
        assert r[f"split_shards_{tag}"] == [[3 * 216, 4]], r[f"split_shards_{tag}"]  # rows only
    assert r["mv_row_sharded_input"] <= TOL_F64
    assert r["halo_exact"]
    assert r["entries_total"] == r["pairs"] + r["cross_pairs"] < 2 * r["pairs"], r
    # a device's halo: about the other rows within 1.5 of its faces (327 measured), not all 648
    assert 0 < r["halo_rows"] <= 0.6 * 3 * r["n_loc"], r
    assert r["mv_split_error"] is not None and "split layout" in r["mv_split_error"]
    assert r["to_split_error"] is not None and "got (5,)" in r["to_split_error"]
    assert r["from_split_error"] is not None and "split layout" in r["from_split_error"]
    assert r["modes"]["eig"] <= TOL_EIG and r["modes"]["angle"] <= TOL_ANGLE, r["modes"]
    assert "halo exchange" in r["modes_vectors"], r["modes_vectors"]


@pytest.mark.slow  # highest modes and batches, vectors split across devices
def test_jax_lobpcg_split_vectors_highest_and_batched(four_devices_full):
    r = four_devices_full["orthorhombic"]
    for key in ("modes_jax", "modes_jax_highest", "modes_jax_batched"):
        assert r[key]["eig"] <= TOL_EIG and r[key]["angle"] <= TOL_ANGLE, (key, r[key])
    assert r["modes_jax_batches"] == 2


@pytest.mark.slow
def test_sharded_dense_solver_float32_and_uneven_split(four_devices_full):
    r = four_devices_full["orthorhombic"]
    assert r["modes_dense"]["eig"] <= TOL_EIG and r["modes_dense"]["angle"] <= TOL_ANGLE, r["modes_dense"]
    assert r["mv_float32"] <= TOL_F32 and r["dtype32"] == "float32"
    assert r["mv_3_devices"] <= TOL_F64


def test_sharded_refuses_a_mesh_of_rank_two(four_devices):
    msg = four_devices["mesh_rank2_error"]
    assert msg is not None and "devices=" in msg and "rank 2" in msg


# -- one device, in this process ------------------------------------------------------------------
def test_one_device_sharded_operator_equals_the_plain_one():
    """Species tables (Kob-Andersen) and bonded per-pair parameters (an elastic network, looked
    up by pair index) survive the spatial permutation; one device suffices for that."""
    _, R, box = system("orthorhombic")
    rng = np.random.default_rng(3)
    species = rng.integers(0, 2, len(R))
    ka = mdhess.load_potential("kob-andersen")
    enm = mdhess.elastic_network(R, cutoff=1.7, box=box)
    R2 = R + 0.02 * rng.standard_normal(R.shape)  # off the reference: the springs are stretched
    v = rng.standard_normal(3 * len(R))
    for pot, kw in ((ka, {"species": species}), (enm, {})):
        op = mdhess.hvp(pot, R2, box=box, devices=jax.devices(), **kw)
        assert isinstance(op, mdhess.HessianOperator) and op.shape == (3 * len(R),) * 2 and op.dtype == np.float64
        assert _rel(op @ v, np.asarray(mdhess.hvp(pot, R2, box=box, **kw) @ v)) <= TOL_F64
        # the spatial order is a permutation, applied on the way in and out
        assert sorted(op.perm.tolist()) == list(range(len(R))) and not (op.perm == np.arange(len(R))).all()


@pytest.mark.parametrize(
    "devices, match",
    [
        ("cpu", r"hvp\(devices=\.\.\.\) must be a non-empty list of JAX devices.*str 'cpu'"),
        ([0, 1], r"hvp\(devices=\.\.\.\) must hold JAX devices.*int 0"),
        ([], r"hvp\(devices=\.\.\.\) must be a non-empty list"),
    ],
)
def test_bad_devices_are_refused(devices, match):
    pot, R, _ = system("free")
    with pytest.raises(mdhess.InputError, match=match):
        mdhess.hvp(pot, R, devices=devices)


def test_bad_devices_and_formats_for_hessian():
    from jax.sharding import Mesh

    pot, R, _ = system("free")
    with pytest.raises(mdhess.InputError, match=r"hessian\(devices=\.\.\.\) must be a 1-D.*rank 2"):
        mdhess.hessian(pot, R, format="bsr", devices=Mesh(np.array(jax.devices()).reshape(1, 1), ("a", "b")))
    with pytest.raises(mdhess.InputError, match=r"hessian\(devices=\.\.\.\) needs format='bsr'.*'dense'"):
        mdhess.hessian(pot, R, devices=jax.devices())
    with pytest.raises(mdhess.InputError, match=r"more than once"):
        mdhess.hvp(pot, R, devices=jax.devices() * 2)


# -- mdhess.distributed ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_coordinator_is_a_clear_error_within_the_timeout():
    t = time.perf_counter()
    with pytest.raises(mdhess.distributed.CoordinatorError, match=r"no coordinator answered at 127\.0\.0\.1:\d+ within 1 s"):
        mdhess.distributed.initialize(f"127.0.0.1:{_free_port()}", 2, 1, timeout=1)
    assert time.perf_counter() - t < 5
    assert not mdhess.distributed.is_initialized()


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("localhost",), {"num_processes": 2, "process_id": 1}, r"coordinator_address=\.\.\.\) must be 'host:port'"),
        (("127.0.0.1:1234", 2, 2), {}, r"process_id=\.\.\.\) must be below num_processes=2; got 2"),
        (("127.0.0.1:1234", 0, 0), {}, r"num_processes=\.\.\.\) must be an integer >= 1"),
        (("127.0.0.1:1234", 2, 1), {"timeout": -1}, r"timeout=\.\.\.\) must be a positive number"),
    ],
)
def test_distributed_bad_arguments(args, kwargs, match):
    with pytest.raises(mdhess.InputError, match=match):
        mdhess.distributed.initialize(*args, **kwargs)
    assert not mdhess.distributed.is_initialized()


def two_process_member(address: str, rank: int, out: str):
    """One of two processes: initialize, then a sharded op @ v, BSR and lowest modes over the
    devices of both processes (one CPU device each)."""
    info = mdhess.distributed.initialize(address, 2, rank, timeout=120)
    assert info["process_count"] == 2 and info["devices"] == 2, info
    pot, R, box = system("orthorhombic")
    v = np.random.default_rng(1).standard_normal((3 * len(R), 3))
    op = mdhess.hvp(pot, R, box=box, devices=jax.devices())
    y = np.asarray(op @ v)
    B = op.to_bsr().toarray()
    m = mdhess.normal_modes(op, k=10, solver="lobpcg")
    mj = mdhess.normal_modes(op, k=10, solver="jax-lobpcg", positions=R, box=box, tol=1e-10)
    import mdhess.modes._jax_lobpcg as jl

    jl.PROCESS_SPLIT = True  # (the whole vectors fit here, and "auto" keeps them whole)
    pot, R, box = system("free")  # 97 atoms: one padding atom on the second process's device
    opf = mdhess.hvp(pot, R[:97], box=box, devices=jax.devices())
    mf = mdhess.normal_modes(opf, k=10, solver="jax-lobpcg", positions=R[:97], tol=1e-10)
    np.savez(out, y=y, B=B, w=np.asarray(m.eigenvalues), V=np.asarray(m.vectors), wj=np.asarray(mj.eigenvalues),
             Vj=np.asarray(mj.vectors), vectors=mj.info.get("vectors", ""), wf=np.asarray(mf.eigenvalues),
             Vf=np.asarray(mf.vectors), vectors_f=mf.info.get("vectors", ""))  # fmt: skip
    mdhess.distributed.shutdown()


def disagreeing_member(address: str, rank: int, out: str):
    """One of two processes making sharded calls on which they disagree: process 1 passes other
    positions, then refuses by its own memory limit, then has a NaN position; then both make a
    correct call."""
    mdhess.distributed.initialize(address, 2, rank, timeout=120)
    pot, R, box = system("orthorhombic")
    res, t = {}, time.perf_counter()
    moved = R.copy()
    moved[0, 0] += 0.01 * rank
    nan = R.copy()
    nan[5, 1] = np.nan if rank == 1 else nan[5, 1]
    calls = {
        "differ": lambda: mdhess.hvp(pot, moved, box=box, devices=jax.devices()),
        "memory": lambda: mdhess.hessian(pot, R, box=box, format="bsr", devices=jax.devices(),
                                         memory_limit="1M" if rank == 1 else None),  # fmt: skip
        "nan": lambda: mdhess.hvp(pot, nan, box=box, devices=jax.devices()),
    }
    for key, call in calls.items():
        try:
            call()
            res[key] = None
        except (mdhess.InputError, mdhess.MemoryPlanError) as exc:
            res[key] = [type(exc).__name__, str(exc)]
    op = mdhess.hvp(pot, R, box=box, devices=jax.devices())  # still in step: a correct call works
    v = np.random.default_rng(1).standard_normal(3 * len(R))
    res["mv"] = _rel(op @ v, np.asarray(mdhess.hvp(pot, R, box=box) @ v))
    # the JAX LOBPCG's plan from each host's memory: process 1 can hold only split vectors
    # (one block: 1.04 MB whole, 0.62 MB split), process 0 whole ones; they must agree (split)
    if rank == 1:
        os.environ["MDHESS_MEMORY_LIMIT"] = "700K"
    try:
        m = mdhess.normal_modes(op, k=10, solver="jax-lobpcg", positions=R, box=box, tol=1e-10)
    finally:
        os.environ.pop("MDHESS_MEMORY_LIMIT", None)
    res["modes_vectors"] = m.info["vectors"]
    res["w"], res["V"] = np.asarray(m.eigenvalues).tolist(), np.asarray(m.vectors).tolist()
    # the solver's branches taken on process 0's numbers (process_zero_decides): process 1's 5th
    # convergence test "rounds differently" and finds every column converged. Alone, it would
    # leave the iteration while process 0 goes on into the next product, a collective: a crash
    # ("collective mismatch") or a hang. Its data are unchanged, so both must follow process 0.
    from mdhess.modes import _jax_lobpcg
    from mdhess.pair._sharded import process_zero_decides

    decide = process_zero_decides(op.mesh)
    res["decided"] = [np.asarray(x).tolist() for x in decide(np.array([True, rank == 1]), 3 + rank, np.array([1.5, 2.25 + rank]), 7.0)]
    original, calls = _jax_lobpcg._prepare, [0]

    def prepare(*args, **kwargs):
        Q, W, AP_o, ok, r = original(*args, **kwargs)
        calls[0] += 1
        return Q, W, AP_o, (jax.numpy.ones_like(ok) if calls[0] == 5 and rank == 1 else ok), r

    _jax_lobpcg._prepare = prepare
    try:
        m = mdhess.normal_modes(op, k=10, solver="jax-lobpcg", positions=R, box=box, tol=1e-10)
    finally:
        _jax_lobpcg._prepare = original
    res["decide_vectors"], res["decide_iterations"] = m.info["vectors"], m.info["iterations"]
    # solver="auto" past the dense sizes: not the numpy LOBPCG (its branches are each process's
    # own) on an operator across processes; the JAX one, whose branches are process 0's
    from mdhess.modes import _nma
    from mdhess.modes._input import hessian_input

    sizes = {k: getattr(_nma, k) for k in ("DENSE_MAX", "DENSE_MAX_NO_POSITIONS", "DENSE_MAX_FULL")}
    for k in sizes:
        setattr(_nma, k, 0)
    try:
        res["auto"] = [_nma.choose_solver("auto", hessian_input(o), k=10, which="lowest", positions=R, cell=box)
                       for o in (op, mdhess.hvp(pot, R, box=box))]  # fmt: skip
    finally:
        for k, v in sizes.items():
            setattr(_nma, k, v)
    res["decide_w"], res["decide_V"] = np.asarray(m.eigenvalues).tolist(), np.asarray(m.vectors).tolist()
    res["seconds"] = time.perf_counter() - t
    Path(out).write_text(json.dumps(res))
    mdhess.distributed.shutdown()


def _run_two_processes(flag: str, outs: list):
    """This file run as two processes (``flag``: the member to run) joined on 127.0.0.1, one CPU
    device each; each writes its results to its ``outs`` entry. Asserts both exit cleanly."""
    address = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE), flag, address, str(rank), str(outs[rank])],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(x[-3000:] for x in logs)


@pytest.mark.slow  # two fresh JAX processes plus Gloo set-up: ~20-30 s
def test_processes_that_disagree_fail_together_and_clearly(tmp_path):
    """A sharded call across processes fails in every process at once when one process fails
    (its own error there, the same type naming it elsewhere: no process left waiting in a
    collective) or when the processes' inputs differ (else each would compute its devices'
    blocks from its own input: a silently mixed Hessian). Then the processes are still in step."""
    _run_two_processes("--disagree", [tmp_path / f"d{rank}.json" for rank in (0, 1)])
    r0, r1 = (json.loads((tmp_path / f"d{rank}.json").read_text()) for rank in (0, 1))
    for r in (r0, r1):
        assert r["differ"][0] == "InputError" and "differ between processes" in r["differ"][1], r["differ"]
        assert "[1]" in r["differ"][1]
        assert r["mv"] <= TOL_F64 and r["seconds"] < 120, r
    assert r1["memory"][0] == "MemoryPlanError" and "stops too" not in r1["memory"][1], r1["memory"]  # its own
    assert r0["memory"][0] == "MemoryPlanError" and "process 1 of 2 failed" in r0["memory"][1], r0["memory"]
    assert r1["memory"][1] in r0["memory"][1]  # process 0 reports process 1's own reason
    assert r1["nan"][0] == "InputError" and "positions" in r1["nan"][1]
    assert r0["nan"][0] == "InputError" and "process 1 of 2 failed" in r0["nan"][1] and r1["nan"][1] in r0["nan"][1]
    # the solver's plan, made from different memory limits, agreed: split in both, same modes
    pot, R, box = system("orthorhombic")
    m = mdhess.normal_modes(mdhess.hvp(pot, R, box=box), k=10, solver="jax-lobpcg", positions=R, box=box, tol=1e-10)
    for r in (r0, r1):
        assert r["modes_vectors"].startswith("rows split across 2 devices of 2 processes"), r["modes_vectors"]
        d = _modes_diff(type("M", (), {"eigenvalues": np.array(r["w"]), "vectors": np.array(r["V"])}), m)
        assert d["eig"] <= TOL_EIG and d["angle"] <= TOL_ANGLE, d
    # process 0's numbers in both (types and shapes kept), and its branches: the solve on whole
    # vectors in which process 1 alone "found" convergence early ends where one process ends
    assert r0["decided"] == r1["decided"] == [[True, False], 3, [1.5, 2.25], 7.0]
    assert r0["auto"] == r1["auto"] == ["jax-lobpcg", "lobpcg"]  # across processes; this process alone
    for r in (r0, r1):
        assert r["decide_vectors"].startswith("whole in each of the 2 processes"), r["decide_vectors"]
        assert r["decide_iterations"] == m.info["iterations"]
        d = _modes_diff(type("M", (), {"eigenvalues": np.array(r["decide_w"]), "vectors": np.array(r["decide_V"])}), m)
        assert d["eig"] <= TOL_EIG and d["angle"] <= TOL_ANGLE, d


def test_decisions_within_one_process_are_left_as_they_are():
    # process_zero_decides broadcasts only where a mesh spans processes (the two-process test
    # above); without a mesh or within this process the values come back untouched, uncopied
    from jax.sharding import Mesh

    from mdhess.pair._sharded import process_zero_decides

    values = (np.array([True, False]), 3, np.array([1.5, np.nan]), 7.0)
    for mesh in (None, Mesh(np.array(jax.devices()), ("d",))):
        out = process_zero_decides(mesh)(*values)
        assert len(out) == 4 and all(a is b for a, b in zip(out, values))


def test_vectors_split_across_processes_only_where_whole_ones_do_not_fit(monkeypatch):
    """PROCESS_SPLIT="auto": whole vectors in each process while one block of them fits the
    memory limit (faster: no collective across processes in every step), split beyond."""
    import mdhess.modes._jax_lobpcg as jl

    n, b, kv = 3 * 10_000, 25, 20  # one block: SOLVER_BLOCKS arrays of (n, b) floats, ~120 MB
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "8G")
    assert not jl._split_across_processes(n, b, kv, 0)
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "40M")
    assert jl._split_across_processes(n, b, kv, 0)
    monkeypatch.setattr(jl, "PROCESS_SPLIT", False)
    assert not jl._split_across_processes(n, b, kv, 0)
    monkeypatch.setattr(jl, "PROCESS_SPLIT", True)
    monkeypatch.setenv("MDHESS_MEMORY_LIMIT", "8G")
    assert jl._split_across_processes(n, b, kv, 0)


# -- memory plan of sharded calls -------------------------------------------------------------------
def _ka_random(n: int):
    rng = np.random.default_rng(0)
    L = (n / 1.2) ** (1 / 3)
    return mdhess.load_potential("kob-andersen"), rng.uniform(0, L, (n, 3)), L, (rng.random(n) < 0.2).astype(np.int32)


def test_sharded_request_that_cannot_fit_is_refused_before_the_pair_list():
    """The pair list alone fits (160 bytes a pair: ~240 MB for these 1.3 M pairs) but the sharded
    operator's plan (~1 GB) does not: refused from the estimated pair count, before any list."""
    pot, R, L, s = _ka_random(40000)
    t0 = time.perf_counter()
    with pytest.raises(mdhess.MemoryPlanError, match=r"hessian\(devices=\.\.\., N=40000.*before any list was built") as info:
        mdhess.hessian(pot, R, box=L, species=s, format="bsr", devices=jax.devices(), memory_limit="500M")
    assert time.perf_counter() - t0 < 2.0  # the list of 1.3 M pairs takes longer than that to build
    assert "blocks" in str(info.value) and "entries" in str(info.value)


def rss_member(out: str):
    """Subprocess: peak RSS of a 4-device sharded BSR build at N = 8000 against its plan."""
    import resource

    from mdhess.pair import _planner

    pot, R, L, s = _ka_random(8000)

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(x.split()[1]) * 1024 for x in fh if x.startswith(key))

    try:  # this call's peak alone: the high-water mark reset to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base, peak_of = status("VmRSS:"), lambda: status("VmHWM:")
    except OSError:  # elsewhere: the peak so far (an import transient may hide the call's)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    op = mdhess.hessian(pot, R, box=L, species=s, format="bsr", devices=jax.devices())
    peak = peak_of()
    plan = _planner.estimate_sharded_memory(8000, op.n_pair_slots, n_devices=4, local_devices=4, call="hessian")
    Path(out).write_text(json.dumps({"used": peak - base, "plan": plan.total_bytes}))


def test_sharded_build_stays_within_its_plan(tmp_path):
    """Peak RSS growth of a 4-device build (pair list, partition, entries, blocks, XLA) <= plan
    (measured 0.70-0.81 of it at N = 5,000-40,000 on 1, 2 and 4 devices)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = tmp_path / "rss.json"
    r = subprocess.run([sys.executable, str(HERE), "--rss", str(out)], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(out.read_text())
    assert 0 < m["used"] <= m["plan"], m


@pytest.mark.slow  # two fresh JAX processes plus Gloo set-up: ~20-40 s on this machine
def test_two_processes_on_localhost_equal_one_process(tmp_path):
    _run_two_processes("--member", [tmp_path / f"p{rank}.npz" for rank in (0, 1)])
    pot, R, box = system("orthorhombic")
    v = np.random.default_rng(1).standard_normal((3 * len(R), 3))
    op = mdhess.hvp(pot, R, box=box)
    y = np.asarray(op @ v)
    B = mdhess.hessian(pot, R, box=box, format="bsr").toarray()
    m = mdhess.normal_modes(op, k=10, solver="lobpcg")
    mj = mdhess.normal_modes(op, k=10, solver="jax-lobpcg", positions=R, box=box, tol=1e-10)
    pot, Rf, _ = system("free")
    mf = mdhess.normal_modes(mdhess.hvp(pot, Rf[:97]), k=10, solver="jax-lobpcg", positions=Rf[:97], tol=1e-10)
    for rank in (0, 1):
        z = np.load(tmp_path / f"p{rank}.npz")
        assert _rel(z["y"], y) <= TOL_F64 and _rel(z["B"], B) <= TOL_F64
        d = _modes_diff(type("M", (), {"eigenvalues": z["w"], "vectors": z["V"]}), m)
        assert d["eig"] <= TOL_EIG and d["angle"] <= TOL_ANGLE, d
        d = _modes_diff(type("M", (), {"eigenvalues": z["wj"], "vectors": z["Vj"]}), mj)
        assert d["eig"] <= TOL_EIG and d["angle"] <= TOL_ANGLE, (d, str(z["vectors"]))
        d = _modes_diff(type("M", (), {"eigenvalues": z["wf"], "vectors": z["Vf"]}), mf)
        assert d["eig"] <= TOL_EIG and d["angle"] <= TOL_ANGLE, (d, str(z["vectors_f"]))
        # the JAX LOBPCG's vectors: whole in each process where they fit ("auto"), else (forced
        # here) split across the two processes' devices, each holding its rows
        assert str(z["vectors"]).startswith("whole in each of the 2 processes"), str(z["vectors"])
        assert str(z["vectors_f"]).startswith(
            "rows split across 2 devices of 2 processes (1 padding atoms; in the operator's spatial order; products by halo"
        ), str(z["vectors_f"])


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2] == "full")))
    elif sys.argv[1] == "--member":
        two_process_member(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "--disagree":
        disagreeing_member(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "--rss":
        rss_member(sys.argv[2])

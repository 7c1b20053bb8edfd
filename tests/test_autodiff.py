"""Composable energies (custom_jvp), hessian_of for any energy, and the memory planner."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import POTENTIALS, TOL, species_for, structure

import mdhess
from mdhess._errors import MemoryPlanError


@pytest.fixture
def standard_promotion():
    """jax-md's own code mixes int and float arrays, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# energy_fn uses the minimum image: periodic geometries whose cutoff is <= half the box


# default run: one case per geometry; the rest in the slow set
AD_CASES = [
    ("lennard_jones", "free"),
    pytest.param("lennard_jones", "orthorhombic", marks=pytest.mark.slow),
    ("morse", "triclinic"),
    pytest.param("soft_sphere_hertz", "orthorhombic", marks=pytest.mark.slow),  # default: 3 cases (run time)
    ("lennard_jones_switch", "free_cutoff"),
    pytest.param("coulomb_dsf", "triclinic", marks=pytest.mark.slow),
    pytest.param("buckingham", "free", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,geometry", AD_CASES)
def test_grad_jvp_hessian_of_energy_fn_match_pair_kernels(name, geometry, rng):
    R, box, rc = structure(geometry)
    pot = POTENTIALS[name](True, rc)
    s = species_for(len(R), True)
    E = mdhess.energy_fn(pot, box=box, species=s)
    Rj = jnp.asarray(R)
    assert abs(float(jax.jit(E)(Rj)) - mdhess.energy(pot, R, box=box, species=s)) <= 1e-12 * max(1.0, abs(float(E(Rj))))
    F = mdhess.forces(pot, R, box=box, species=s)
    assert rel(-jax.jit(jax.grad(E))(Rj), F) <= TOL["ad"]
    H = np.asarray(mdhess.hessian(pot, R, box=box, species=s))
    v = rng.normal(size=R.shape)
    _, Hv = jax.jit(lambda x, t: jax.jvp(jax.grad(E), (x,), (t,)))(Rj, jnp.asarray(v))
    assert rel(np.asarray(Hv).ravel(), H @ v.ravel()) <= TOL["ad"]
    Hj = jax.jit(jax.hessian(E))(Rj).reshape(H.shape)
    assert rel(Hj, H) <= TOL["ad"]
    Fs = mdhess.forces_fn(pot, box=box, species=s)
    assert rel(jax.jit(Fs)(Rj), F) <= TOL["ad"]


def test_vmap_over_configurations():
    R, box, rc = structure("orthorhombic")
    pot = mdhess.lennard_jones(cutoff=rc)
    E = mdhess.energy_fn(pot, box=box)
    Rs = np.stack([structure("orthorhombic", seed=k)[0] for k in range(3)])
    Es = jax.jit(jax.vmap(E))(jnp.asarray(Rs))
    Hs = jax.jit(jax.vmap(jax.hessian(E)))(jnp.asarray(Rs))
    for k in range(3):
        assert abs(float(Es[k]) - mdhess.energy(pot, Rs[k], box=box)) <= 1e-10
        assert rel(Hs[k].reshape(192, 192), mdhess.hessian(pot, Rs[k], box=box)) <= TOL["ad"]


def test_reverse_over_reverse_and_elastic_network():
    R = np.random.default_rng(2).uniform(0, 8, (30, 3))
    net = mdhess.elastic_network(R, cutoff=5.0, k=1.5)
    E = mdhess.energy_fn(net)
    R2 = jnp.asarray(R + np.random.default_rng(3).normal(scale=0.1, size=R.shape))
    H = mdhess.hessian(net, np.asarray(R2))
    assert rel(jax.jit(jax.hessian(E))(R2).reshape(90, 90), H) <= TOL["ad"]  # jitted: eager op-by-op dispatch compiles each op
    # d/dR |F|^2 = -2 H F: reverse mode through the custom forces rule
    F = -jax.jit(jax.grad(E))(R2)
    g = jax.jit(jax.grad(lambda x: jnp.sum(jax.grad(E)(x) ** 2)))(R2)
    assert rel(np.asarray(g).ravel(), -2 * np.asarray(H) @ np.asarray(F).ravel()) <= 1e-11


# default run: the Sparse format (each jax-md format compiles its own functions, ~10 s apiece)
@pytest.mark.parametrize("fmt", [pytest.param("Dense", marks=pytest.mark.slow), "Sparse", pytest.param("OrderedSparse", marks=pytest.mark.slow)])
def test_jax_md_neighbor_lists_drive_energy_fn(fmt, standard_promotion):
    from jax_md import partition, space

    R, box, rc = structure("orthorhombic")
    pot = mdhess.lennard_jones(cutoff=rc)
    disp, _ = space.periodic(jnp.asarray(box))
    nfn = partition.neighbor_list(
        disp, jnp.asarray(box), rc, dr_threshold=0.0, format=getattr(partition.NeighborListFormat, fmt), fractional_coordinates=False
    )
    nbrs = nfn.allocate(jnp.asarray(R))
    assert not bool(nbrs.did_buffer_overflow)
    E = mdhess.energy_fn(pot, box=box)
    Rj = jnp.asarray(R)
    assert abs(float(E(Rj, neighbor=nbrs)) - mdhess.energy(pot, R, box=box)) <= 1e-10
    H = jax.jit(jax.hessian(lambda x: E(x, neighbor=nbrs)))(Rj).reshape(192, 192)
    assert rel(H, mdhess.hessian(pot, R, box=box)) <= TOL["ad"]


@pytest.mark.slow  # ~9 s: 3000 FIRE steps compiled; jax-md integration also in tests/test_jax_md.py
def test_fire_minimisation_with_energy_fn_lowers_energy_to_a_minimum(standard_promotion):
    from jax_md import minimize, space

    R, box, rc = structure("orthorhombic", seed=3)
    pot = mdhess.lennard_jones(cutoff=rc)
    E = mdhess.energy_fn(pot, box=box)
    _, shift = space.periodic(jnp.asarray(box))
    init, apply = minimize.fire_descent(E, shift, dt_start=0.002, dt_max=0.01)
    state = init(jnp.asarray(R))
    state = jax.jit(lambda s: jax.lax.fori_loop(0, 3000, lambda k, st: apply(st), s))(state)
    Rmin = np.asarray(state.position)
    assert mdhess.energy(pot, Rmin, box=box) < mdhess.energy(pot, R, box=box)
    assert np.abs(np.asarray(mdhess.forces(pot, Rmin, box=box))).max() < 1e-3
    w = np.linalg.eigvalsh(np.asarray(mdhess.hessian(pot, Rmin, box=box)))
    assert w[3] > -1e-6  # a minimum: only the 3 translations are (near) zero, no negative mode


def _three_body(R):
    """A non-pairwise energy: sum over triplets of a smooth angular term (Stillinger-Weber-like)."""
    d = R[None, :, :] - R[:, None, :]
    r2 = jnp.sum(d * d, -1) + jnp.eye(R.shape[0])
    w = jnp.exp(-r2) * (1 - jnp.eye(R.shape[0]))
    cos = jnp.einsum("ija,ika->ijk", d, d) / jnp.sqrt(r2[:, :, None] * r2[:, None, :])
    return jnp.einsum("ij,ik,ijk->", w, w, (cos + 1.0 / 3.0) ** 2) + 0.1 * jnp.sum(r2 * w)


def test_hessian_of_non_pairwise_energy_matches_jax_hessian():
    R = np.random.default_rng(4).normal(size=(12, 3))
    ref = np.asarray(jax.jit(jax.hessian(_three_body))(jnp.asarray(R))).reshape(36, 36)
    for b in (5, None):  # a ragged last batch and one batch; 1 and 36 (each its own compile) are in the slow set
        H = mdhess.hessian_of(_three_body, R, batch_size=b)
        assert rel(H, ref) <= 1e-13


@pytest.mark.slow
def test_hessian_of_non_pairwise_energy_every_batch_size():
    R = np.random.default_rng(4).normal(size=(12, 3))
    ref = np.asarray(jax.jit(jax.hessian(_three_body))(jnp.asarray(R))).reshape(36, 36)
    for b in (1, 36):  # one tangent at a time; all 3N at once
        assert rel(mdhess.hessian_of(_three_body, R, batch_size=b), ref) <= 1e-13


def test_hessian_of_memory_is_bounded_by_batch():
    R = jnp.asarray(np.random.default_rng(4).normal(size=(40, 3)))
    grad_flat = lambda x: jax.grad(lambda y: _three_body(y.reshape(40, 3)))(x).ravel()  # noqa: E731
    f = jax.jit(lambda x, V: jax.vmap(jax.linearize(grad_flat, x)[1])(V))  # what hessian_of runs

    def temp(b):
        return f.lower(R.ravel(), jax.ShapeDtypeStruct((b, 120), R.dtype)).compile().memory_analysis().temp_size_in_bytes

    t8, t120 = temp(8), temp(120)
    assert t8 * 4 < t120  # temporaries scale with the batch, not with the full 3N basis
    # and hessian_of refuses, naming the estimate, when even the batch cannot fit
    with pytest.raises(MemoryPlanError, match=r"about .* exceeds the memory limit"):
        mdhess.hessian_of(_three_body, R, batch_size=120, memory_limit=t8)


def test_planner_refuses_oversized_requests_before_allocating():
    R = np.random.default_rng(0).normal(size=(400, 3)) * 5
    pot = mdhess.lennard_jones()
    with pytest.raises(MemoryPlanError, match=r"method='ad'.*about \d+\.\d+ GiB.*exceeds the memory limit of 1\.00 GiB"):
        mdhess.hessian(pot, R, method="ad", memory_limit="1G")
    with pytest.raises(MemoryPlanError, match=r"format='dense'.*exceeds.*format='bsr'"):
        mdhess.hessian(pot, R, memory_limit=1_000_000)
    plan = mdhess.estimate_memory(1000, 20000, format="dense")
    assert plan.total_bytes >= 3000 * 3000 * 8
    # all pairs, no cutoff: the output, the two (N, N) tables and one row block's scratch;
    # nothing per pair block
    plan = mdhess.estimate_memory(1000, 1000 * 999 // 2, format="dense", all_pairs=True)
    tables = 3000 * 3000 * 8 + 2 * 1000 * 1000 * 8
    assert tables < plan.total_bytes <= tables + 12 * (1 << 24) * 8
    out = 150 * 150 * 8  # 50 atoms: 180 kB output + 40 kB tables + 240 kB scratch
    with pytest.raises(MemoryPlanError, match="pair tables"):
        mdhess.hessian(pot, R[:50], memory_limit=out + 100_000)
    mdhess.hessian(pot, R[:50], memory_limit=out + 300_000)
    H = mdhess.hessian(pot, R[:50], memory_limit="1G")  # a request that fits goes through
    assert H.shape == (150, 150)


def test_energy_fn_bad_input():
    pot = mdhess.lennard_jones(cutoff=3.0)
    with pytest.raises(mdhess.InputError, match="cutoff 3 exceeds half"):
        mdhess.energy_fn(pot, box=5.0)
    with pytest.raises(mdhess.InputError, match="no cutoff"):
        mdhess.energy_fn(mdhess.lennard_jones(), box=10.0)
    E = mdhess.energy_fn(pot, species=np.zeros(5, np.int32))
    with pytest.raises(mdhess.InputError, match="species has 5 entries but positions have 4"):
        E(jnp.zeros((4, 3)))
    with pytest.raises(mdhess.InputError, match=r"shape \(n_atoms, 3\)"):
        mdhess.energy_fn(pot)(jnp.zeros((4, 2)))
    with pytest.raises(mdhess.InputError, match="batch_size"):
        mdhess.hessian_of(_three_body, np.ones((3, 3)), batch_size=0)

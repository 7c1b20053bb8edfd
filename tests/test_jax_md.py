"""mdhess.plugins.jax_md: jax-md neighbour lists drive mdhess assembly (identical Hessians to
mdhess's own lists), mdhess energies in jax-md's FIRE reach the minima of jax-md's own
Lennard-Jones with the same cutoff treatment, and hessian_of on jax-md's Stillinger-Weber."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import species_for, structure

with jax.numpy_dtype_promotion("standard"):  # jax-md's import-time code mixes int and float
    pytest.importorskip("jax_md")
    from jax_md import energy as jenergy  # noqa: E402
    from jax_md import minimize, partition, smap  # noqa: E402
    from jax_md import space as jspace  # noqa: E402

import mdhess  # noqa: E402
import mdhess.pair._prepare  # noqa: E402
from mdhess.plugins import jax_md as mjx  # noqa: E402

FORMATS = ["Dense", "Sparse", "OrderedSparse"]
f64 = jnp.float64


@pytest.fixture(autouse=True)
def standard_promotion():
    # jax-md's own code mixes float32 boxes and float64 positions; conftest's "strict" promotion
    # is for mdhess's code, which the plugin runs outside this context where it can.
    with jax.numpy_dtype_promotion("standard"):
        yield


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


def two_species_lj(rc):
    t = lambda a, b, c: np.array([[a, b], [b, c]])  # noqa: E731
    return mdhess.lennard_jones(
        sigma=t(1.0, 0.8, 0.88), epsilon=t(1.0, 1.5, 0.5), cutoff=rc * t(1.0, 0.8, 0.88)
    )


# Same pairs, same per-pair blocks, the diagonal blocks summed in another order: equal to 1e-14
# relative (a few ulps).
# default run: the Sparse format on the orthorhombic box (every other format and box with -m slow)
# (each new jax-md list compiles its own functions: seconds apiece on a 2-core CPU)
FAST = {("orthorhombic", "Sparse")}  # the other formats: slow set (test_autodiff runs energy_fn on Sparse lists too)
LIST_CASES = [
    (g, f) if (g, f) in FAST else pytest.param(g, f, marks=pytest.mark.slow)
    for g in ["free_cutoff", "orthorhombic", "triclinic"]
    for f in FORMATS
]


@pytest.mark.parametrize("geometry,fmt", LIST_CASES)
def test_jax_md_list_gives_the_same_hessian_as_mdhess(fmt, geometry):
    R, box, rc = structure(geometry)
    pot = two_species_lj(rc)
    s = species_for(len(R), True)
    nfn = mjx.neighbor_list(pot, box, format=fmt, dr_threshold=0.1 if geometry != "triclinic" else 0.0)
    nbrs = nfn.allocate(jnp.asarray(R))
    H = mjx.hessian(pot, R, nbrs, box=box, species=s)
    H0 = mdhess.hessian(pot, R, box=box, species=s)
    assert np.abs(np.asarray(H0)).max() > 0
    assert rel(H, H0) <= 1e-14
    B = mjx.hessian(pot, R, nbrs, box=box, species=s, format="bsr")
    B0 = mdhess.hessian(pot, R, box=box, species=s, format="bsr")
    assert np.array_equal(B.indptr, B0.indptr) and np.array_equal(B.indices, B0.indices)  # same sparsity
    assert rel(B.toarray(), B0.toarray()) <= 1e-14
    v = np.random.default_rng(0).normal(size=3 * len(R))
    assert rel(mjx.hvp(pot, R, nbrs, box=box, species=s) @ v, np.asarray(H0) @ v) <= 1e-14


def test_stale_and_overflowing_lists_are_updated_and_reallocated():
    R, box, rc = structure("orthorhombic")
    pot = mdhess.lennard_jones(cutoff=rc)
    nfn = mjx.neighbor_list(pot, box, format="Sparse", capacity_multiplier=1.0)
    nbrs = nfn.allocate(jnp.asarray(R))
    # squeeze the atoms into 70% of the box along x: more pairs fall inside the cutoff than the
    # list holds
    R2 = R * np.array([0.7, 1.0, 1.0])
    assert bool(nfn.update(jnp.asarray(R2), nbrs).did_buffer_overflow)
    H = mjx.hessian(pot, R2, nbrs, box=box)
    assert rel(H, mdhess.hessian(pot, R2, box=box)) <= 1e-14


def test_neighbor_list_radius_and_errors():
    R, box, rc = structure("orthorhombic")
    pot = mdhess.lennard_jones(cutoff=rc)
    nbrs = mjx.neighbor_list(pot, box, format="OrderedSparse").allocate(jnp.asarray(R))
    i, j, mask = (np.asarray(x) for x in mjx.half_pairs(nbrs, len(R)))
    own = mdhess.pair._prepare.Prepared(pot, R, box, None, "t").pairs  # vesin, each pair once
    assert {(a, b) for a, b in zip(i[mask], j[mask])} == {(min(a, b), max(a, b)) for a, b in zip(own.i, own.j)}
    assert mask.sum() == own.n_pairs
    with pytest.raises(mdhess.InputError, match="half the shortest"):
        mjx.neighbor_list(pot, box, dr_threshold=0.5)
    with pytest.raises(mdhess.InputError, match="cutoff"):
        mjx.neighbor_list(mdhess.lennard_jones(), None)
    with pytest.raises(mdhess.InputError, match="format"):
        mjx.neighbor_list(pot, box, format="dense")
    with pytest.raises(mdhess.InputError, match="built for 64 atoms"):
        mjx.hessian(pot, R[:10], nbrs, box=box)
    with pytest.raises(mdhess.InputError, match="NeighborList"):
        mjx.hessian(pot, R, nbrs.idx, box=box)
    with pytest.raises(mdhess.InputError, match="format"):
        mjx.hessian(pot, R, nbrs, box=box, format="csr")


def fcc(n_cells, density, rattle, seed):
    a = (4.0 / density) ** (1.0 / 3.0)
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    g = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = (g + base).reshape(-1, 3) * a
    L = n_cells * a
    return (R + np.random.default_rng(seed).uniform(-rattle, rattle, R.shape)) % L, L


def fire(energy, shift, R, steps, neighbor_fn=None):
    init, apply = minimize.fire_descent(energy, shift, dt_start=0.001, dt_max=0.005)
    if neighbor_fn is None:
        state = init(jnp.asarray(R))
        state = jax.jit(lambda s: jax.lax.fori_loop(0, steps, lambda k, st: apply(st), s))(state)
        return np.asarray(state.position)
    nbrs = neighbor_fn.allocate(jnp.asarray(R))
    state = init(jnp.asarray(R), neighbor=nbrs)

    def body(k, carry):
        st, nb = carry
        nb = nb.update(st.position)
        return apply(st, neighbor=nb), nb

    state, nbrs = jax.jit(lambda c: jax.lax.fori_loop(0, steps, body, c))((state, nbrs))
    assert not bool(nbrs.did_buffer_overflow)
    return np.asarray(state.position)


@pytest.mark.slow  # 22 s; FIRE on mdhess energies stays in the default run (test_quench, test_autodiff)
def test_fire_reaches_the_minimum_of_jax_md_lennard_jones_with_its_own_cutoff():
    # jax-md's lennard_jones_pair multiplies LJ by its C1 switch S(r) (here r_onset 1.5, r_cutoff 2.0).
    # The same scalar as an mdhess pair potential (S(rc) = 0, so mdhess's shift at rc is zero):
    # identical energies, so FIRE from the same rattled fcc crystal must reach the same minimum.
    R0, L = fcc(3, 1.0, 0.08, seed=1)  # 108 atoms, L = 4.76 > 2 x 2.0
    phi = jenergy.multiplicative_isotropic_cutoff(jenergy.lennard_jones, 1.5, 2.0)
    pot = mdhess.pair_potential(
        lambda r, sigma, epsilon: phi(r, sigma=sigma, epsilon=epsilon), cutoff=2.0, sigma=1.0, epsilon=1.0
    )
    disp, shift = jspace.periodic(jnp.asarray(L, f64))
    E_jm = jenergy.lennard_jones_pair(
        disp,
        sigma=jnp.asarray(1.0, f64),
        epsilon=jnp.asarray(1.0, f64),
        r_onset=jnp.asarray(1.5, f64),
        r_cutoff=jnp.asarray(2.0, f64),
    )
    E_md = mdhess.energy_fn(pot, box=L)
    assert abs(float(E_jm(jnp.asarray(R0))) - float(E_md(jnp.asarray(R0)))) <= 1e-11 * abs(
        float(E_md(jnp.asarray(R0)))
    )
    R_md = fire(E_md, shift, R0, 1000)
    R_jm = fire(E_jm, shift, R0, 1000)
    e_md, e_jm = mdhess.energy(pot, R_md, box=L), float(E_jm(jnp.asarray(R_jm)))
    f_md = np.abs(np.asarray(mdhess.forces(pot, R_md, box=L))).max()
    assert f_md < 1e-6 and e_md < mdhess.energy(pot, R0, box=L)
    assert abs(e_md - e_jm) <= 1e-10 * abs(e_jm)


# ~20 s on a loaded 2-core CPU (two FIRE loops compiled); docs/jax-md.md's FIRE example runs the
# same path
@pytest.mark.slow
def test_fire_with_neighbor_lists_matches_plain_shifted_lennard_jones():
    # A plain shifted-cut LJ written with jax-md's smap.pair_neighbor_list against
    # mdhess.lennard_jones(cutoff=2.5) (the same shifted hard cut), both on jax-md lists.
    R0, L = fcc(3, 1.05, 0.08, seed=2)  # 108 atoms, L = 4.68
    rc = 2.0
    pot = mdhess.lennard_jones(cutoff=rc)
    disp, shift = mjx.space(L)

    def shifted_lj(dr, **kw):
        return jnp.where(
            dr < rc, jenergy.lennard_jones(dr) - jenergy.lennard_jones(jnp.asarray(rc, f64)), 0.0
        )

    E_jm = smap.pair_neighbor_list(shifted_lj, jspace.canonicalize_displacement_or_metric(disp))
    E_md = mdhess.energy_fn(pot, box=L)
    nfn = mjx.neighbor_list(pot, L, dr_threshold=0.3, format="Sparse")
    nfn_jm = partition.neighbor_list(disp, L, rc, dr_threshold=0.3, format=partition.Dense)
    assert 2 * (rc + 0.3) <= L
    R_md = fire(E_md, shift, R0, 1000, nfn)
    R_jm = fire(E_jm, shift, R0, 1000, nfn_jm)
    e_md = mdhess.energy(pot, R_md, box=L)
    e_jm = float(E_jm(jnp.asarray(R_jm), neighbor=nfn_jm.allocate(jnp.asarray(R_jm))))
    assert np.abs(np.asarray(mdhess.forces(pot, R_md, box=L))).max() < 1e-6
    assert abs(e_md - e_jm) <= 1e-10 * abs(e_jm)
    # and the Hessian at the minimum from the MD loop's own kind of list
    nbrs = nfn.allocate(jnp.asarray(R_md))
    assert rel(mjx.hessian(pot, R_md, nbrs, box=L), mdhess.hessian(pot, R_md, box=L)) <= 1e-14


@pytest.mark.slow  # ~20 s: jax-md's triple-vmapped SW traced op by op by jax.linearize
def test_hessian_of_jax_md_stillinger_weber():
    # A three-body energy from jax-md (free space, a rattled 35-atom diamond cluster of Si):
    # hessian_of in batches of 16 tangents against jax.hessian; same derivatives, other order.
    a = 5.431
    base = (
        np.array([[0, 0, 0], [0, 2, 2], [2, 0, 2], [2, 2, 0], [1, 1, 1], [1, 3, 3], [3, 1, 3], [3, 3, 1]]) / 4
    )
    g = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = (g + base).reshape(-1, 3) * a
    R = R[np.argsort(np.linalg.norm(R - R.mean(0), axis=1))[:35]]
    R = R + np.random.default_rng(5).normal(scale=0.05, size=R.shape)
    disp, _ = jspace.free()
    E = jenergy.stillinger_weber(disp)
    ref = np.asarray(jax.jit(jax.hessian(E))(jnp.asarray(R))).reshape(105, 105)
    H = mdhess.hessian_of(E, R, batch_size=16)
    assert np.abs(ref).max() > 1.0
    assert rel(H, ref) <= 1e-13
    assert np.abs(H.reshape(35, 3, 35, 3).sum(axis=2)).max() <= 1e-11 * np.abs(H).max()  # translations

"""Core engine: every registered potential x geometry x {one, two species} against dense AD,
finite differences of forces, and layout/invariant checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FD_STEP, GEOMETRIES, POTENTIALS, TOL, species_for, structure
from hypothesis import given, settings
from hypothesis import strategies as st

import mdhess


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@functools.lru_cache(maxsize=None)
def case(name, geometry, two):
    R, box, rc = structure(geometry)
    pot = POTENTIALS[name](two, rc)
    s = species_for(len(R), two)
    H = np.asarray(mdhess.hessian(pot, R, box=box, species=s))
    return pot, R, box, s, H


# Which combinations each check runs (the default run must fit in minutes, issue 17):
# - the dense-AD reference, the check every other one leans on, runs every potential on every
#   geometry (the full product) in the slow set and every potential on two geometries in the
#   default run, one- and two-species tables alternating so that each potential meets both kinds
#   of table and each geometry both kinds too;
# - the layout/invariant and finite-difference checks run every potential once, on geometries
#   taken in turn (two different offsets), so each check still sees every potential, every
#   geometry (2-3 potentials each) and both kinds of table. The layouts are potential-independent
#   code and the AD check above pins every (potential, geometry) block already.
_NAMES = list(POTENTIALS)
CASES = [(n, g, (a + b) % 2 == 1) for a, n in enumerate(_NAMES) for b, g in enumerate(GEOMETRIES)]
LAYOUT_CASES = [c for c in CASES if _NAMES.index(c[0]) % len(GEOMETRIES) == GEOMETRIES.index(c[1])]
FD_CASES = [c for c in CASES if (_NAMES.index(c[0]) + 2) % len(GEOMETRIES) == GEOMETRIES.index(c[1])]
# the AD check in the default run: the layout and FD cases (every potential on two geometries,
# every geometry with five or six potentials and both kinds of table); the full product in the
# slow set
AD_CASES = [c if c in LAYOUT_CASES or c in FD_CASES else pytest.param(*c, marks=pytest.mark.slow) for c in CASES]


def _skip_unsupported(name, geometry):
    # bare Coulomb and the plain user kernel need a cutoff only when periodic; they are run with
    # the geometry's cutoff. Nothing is unsupported today, the hook stays for future kernels.
    return None


@pytest.mark.parametrize("name,geometry,two", AD_CASES)
def test_pair_hessian_matches_autodiff(name, geometry, two):
    pot, R, box, s, H = case(name, geometry, two)
    assert np.abs(H).max() > 0, "an all-zero Hessian would make every comparison vacuous"
    Had = mdhess.hessian(pot, R, box=box, species=s, method="ad")
    assert rel(H, Had) <= TOL["ad"]


@pytest.mark.parametrize("name,geometry,two", LAYOUT_CASES)
def test_layouts_and_invariants(name, geometry, two, rng):
    pot, R, box, s, H = case(name, geometry, two)
    n3 = H.shape[0]
    scale = np.abs(H).max()
    # exact symmetry (the same block is written to (i, j) and (j, i))
    assert np.array_equal(H, H.T)
    # translational sum rule: each block row sums to zero
    rows = H.reshape(n3 // 3, 3, n3 // 3, 3).sum(axis=2)
    assert np.abs(rows).max() <= 1e-12 * scale
    # dense == bsr.toarray(); canonical BSR, from the host assembly (small lists) and from the
    # device gather (large lists; forced here by a zero threshold)
    B = mdhess.hessian(pot, R, box=box, species=s, format="bsr")
    assert B.blocksize == (3, 3) and B.has_canonical_format
    assert np.abs(B.toarray() - H).max() <= TOL["layout"] * scale
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mdhess.pair._layouts, "HOST_BSR_MAX_PAIRS", 0)
        Bd = mdhess.hessian(pot, R, box=box, species=s, format="bsr")
    assert Bd.has_canonical_format and np.array_equal(Bd.indices, B.indices)
    assert np.abs(Bd.toarray() - H).max() <= TOL["layout"] * scale
    # H.v == dense @ v, stored blocks and recomputed, one vector and several
    v = rng.normal(size=n3)
    V = rng.normal(size=(n3, 4))
    for store in (True, False):
        op = mdhess.hvp(pot, R, box=box, species=s, store_blocks=store)
        assert op.shape == H.shape
        assert rel(op @ v, H @ v) <= TOL["layout"]
        assert rel(op @ V, H @ V) <= TOL["layout"]
    lo = mdhess.hvp(pot, R, box=box, species=s).as_linear_operator()
    assert rel(lo.matvec(v), H @ v) <= TOL["layout"]


@pytest.mark.parametrize("name,geometry,two", FD_CASES)
def test_finite_differences_of_forces(name, geometry, two):
    pot, R, box, s, H = case(name, geometry, two)
    n = len(R)
    cols = np.random.default_rng(3).choice(3 * n, size=6, replace=False)
    for c in cols:
        Rp, Rm = R.copy(), R.copy()
        Rp.flat[c] += FD_STEP
        Rm.flat[c] -= FD_STEP
        Fp = np.asarray(mdhess.forces(pot, Rp, box=box, species=s)).ravel()
        Fm = np.asarray(mdhess.forces(pot, Rm, box=box, species=s)).ravel()
        col_fd = -(Fp - Fm) / (2 * FD_STEP)
        assert np.linalg.norm(col_fd - H[:, c]) <= TOL["fd"] * max(np.linalg.norm(H[:, c]), np.abs(H).max() * 1e-3)


@pytest.mark.parametrize("name", list(POTENTIALS))
def test_forces_are_minus_gradient_of_energy(name):
    pot, R, box, s, _ = case(name, "orthorhombic", True)
    F = np.asarray(mdhess.forces(pot, R, box=box, species=s))
    c = 5
    Rp, Rm = R.copy(), R.copy()
    Rp.flat[c] += FD_STEP
    Rm.flat[c] -= FD_STEP
    fd = -(mdhess.energy(pot, Rp, box=box, species=s) - mdhess.energy(pot, Rm, box=box, species=s)) / (2 * FD_STEP)
    assert abs(fd - F.flat[c]) <= 1e-6 * max(1.0, np.abs(F).max())


def test_rotation_covariance_and_permutation(rng):
    R, _, _ = structure("free")
    pot = POTENTIALS["lennard_jones"](False, None)
    H = np.asarray(mdhess.hessian(pot, R))
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    HQ = np.asarray(mdhess.hessian(pot, R @ Q.T))
    n = len(R)
    big = np.kron(np.eye(n), Q)
    assert rel(HQ, big @ H @ big.T) <= 1e-12
    perm = rng.permutation(n)
    Hp = np.asarray(mdhess.hessian(pot, R[perm])).reshape(n, 3, n, 3)
    assert rel(Hp, H.reshape(n, 3, n, 3)[perm][:, :, perm]) <= 1e-14


def test_periodic_translation_by_cell_vector_changes_nothing():
    R, cell, rc = structure("triclinic")
    pot = POTENTIALS["lennard_jones"](False, rc)
    H = np.asarray(mdhess.hessian(pot, R, box=cell))
    R2 = R.copy()
    R2[::3] += cell[1] - 2 * cell[2]  # some atoms moved to another image
    H2 = np.asarray(mdhess.hessian(pot, R2, box=cell))
    assert rel(H2, H) <= 1e-12
    assert abs(mdhess.energy(pot, R2, box=cell) - mdhess.energy(pot, R, box=cell)) <= 1e-10 * abs(mdhess.energy(pot, R, box=cell))


def test_small_cell_sums_every_image_against_brute_force():
    """Independent check of the image enumeration: explicit sum over a 7x7x7 block of images."""
    R, box, rc = structure("small_cell")
    pot = mdhess.lennard_jones(cutoff=rc)
    cell = np.diag(box)
    e_ref = 0.0
    rng_ = range(-3, 4)
    shifts = np.array([[a, b, c] for a in rng_ for b in rng_ for c in rng_], dtype=float) @ cell
    phi_c = 4 * ((1 / rc) ** 12 - (1 / rc) ** 6)
    for i in range(len(R)):
        for j in range(len(R)):
            d = R[j] - R[i] + shifts
            r = np.linalg.norm(d, axis=1)
            r = r[(r > 0) & (r < rc)]
            e_ref += 0.5 * np.sum(4 * (r**-12 - r**-6) - phi_c)
    assert abs(mdhess.energy(pot, R, box=box) - e_ref) <= 1e-10 * abs(e_ref)


def _matscipy_hessian(R, box, rc, sigma=1.0, eps=1.0):
    ase = pytest.importorskip("ase")
    pp = pytest.importorskip("matscipy.calculators.pair_potential")
    atoms = ase.Atoms("H" * len(R), positions=R, cell=box, pbc=box is not None)
    calc = pp.PairPotential({(1, 1): pp.LennardJonesCut(epsilon=eps, sigma=sigma, cutoff=rc)})
    return calc.get_hessian(atoms, format="sparse").toarray()


@pytest.mark.parametrize("geometry", ["free_cutoff", "orthorhombic", "triclinic", "small_cell"])
def test_lennard_jones_matches_matscipy(geometry):
    R, box, rc = structure(geometry)
    if box is None:  # matscipy needs a cell even without periodicity
        box_ms, box_md = np.eye(3) * 50.0, None
    else:
        box_ms = box_md = box
    pot = mdhess.lennard_jones(sigma=1.0, epsilon=1.0, cutoff=rc)
    H = np.asarray(mdhess.hessian(pot, R, box=box_md))
    cell = np.diag(box_ms) if np.ndim(box_ms) == 1 else box_ms
    Hm = _matscipy_hessian(R, cell if box is not None else None, rc) if box is not None else None
    if Hm is None:
        import ase
        import matscipy.calculators.pair_potential as pp

        atoms = ase.Atoms("H" * len(R), positions=R + 20.0, cell=box_ms, pbc=False)
        Hm = pp.PairPotential({(1, 1): pp.LennardJonesCut(epsilon=1.0, sigma=1.0, cutoff=rc)}).get_hessian(
            atoms, format="sparse"
        ).toarray()
    assert rel(H, Hm) <= TOL["peer"] * 10  # matscipy sums in another order; 1e-11 covers it


def test_c2_switch_blocks_are_continuous_at_the_shell():
    pot = mdhess.lennard_jones(cutoff=2.5, switch=2.0)
    for r0 in (2.0, 2.5):
        hs = []
        for eps_ in (-1e-7, 1e-7):
            R = np.array([[0.0, 0.0, 0.0], [r0 + eps_, 0.0, 0.0]])
            hs.append(np.asarray(mdhess.hessian(pot, R)))
        assert np.abs(hs[0] - hs[1]).max() <= 1e-5  # second derivative continuous (C2)
    hard = mdhess.lennard_jones(cutoff=2.5)
    a = np.asarray(mdhess.hessian(hard, np.array([[0.0] * 3, [2.5 - 1e-7, 0, 0]])))
    b = np.asarray(mdhess.hessian(hard, np.array([[0.0] * 3, [2.5 + 1e-7, 0, 0]])))
    assert np.abs(a - b).max() > 1e-3  # the hard cut does jump (so the check above has teeth)


def test_shifted_energy_is_zero_at_cutoff_and_matches_formula():
    pot = mdhess.lennard_jones(sigma=1.0, epsilon=1.0, cutoff=2.5)
    for r in (1.0, 1.5, 2.4999):
        R = np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
        ref = 4 * (r**-12 - r**-6) - 4 * (2.5**-12 - 2.5**-6)
        assert abs(mdhess.energy(pot, R) - ref) <= 1e-13
    assert mdhess.energy(pot, np.array([[0.0] * 3, [2.6, 0, 0]])) == 0.0


def test_sum_of_pair_distances_energy():
    R = np.random.default_rng(0).normal(size=(30, 3))
    pot = mdhess.pair_potential(lambda r: r)
    i, j = np.triu_indices(30, 1)
    assert abs(mdhess.energy(pot, R) - np.linalg.norm(R[i] - R[j], axis=1).sum()) <= 1e-10
    H = mdhess.hessian(pot, R)
    assert rel(H, mdhess.hessian(pot, R, method="ad")) <= TOL["ad"]


def test_elastic_network_is_anm_at_reference():
    R = np.random.default_rng(5).uniform(0, 12, (40, 3))
    net = mdhess.elastic_network(R, cutoff=6.0, k=2.0)
    assert net.n_bonds > 0
    H = np.asarray(mdhess.hessian(net, R))
    # ANM Hessian written out directly: H_ij = -k u u^T for bonds
    ref = np.zeros((40, 3, 40, 3))
    for a in range(40):
        for b in range(a + 1, 40):
            d = R[b] - R[a]
            r = np.linalg.norm(d)
            if r < 6.0:
                blk = 2.0 * np.outer(d, d) / r**2
                ref[a, :, b] -= blk
                ref[b, :, a] -= blk
                ref[a, :, a] += blk
                ref[b, :, b] += blk
    assert rel(H, ref.reshape(120, 120)) <= 1e-13
    assert abs(mdhess.energy(net, R)) <= 1e-20
    # away from the reference the (phi'/r)(I - uu) term appears and AD still agrees
    R2 = R + np.random.default_rng(6).normal(scale=0.2, size=R.shape)
    assert rel(mdhess.hessian(net, R2), mdhess.hessian(net, R2, method="ad")) <= TOL["ad"]


def test_float32_dtype():
    R, box, rc = structure("orthorhombic")
    pot = mdhess.lennard_jones(cutoff=rc)
    H64 = np.asarray(mdhess.hessian(pot, R, box=box))
    H32 = mdhess.hessian(pot, R, box=box, dtype="float32")
    assert H32.dtype == jnp.float32
    assert rel(np.asarray(H32, np.float64), H64) <= 1e-5  # float32 eps 1.2e-7 x cancellation in sums


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_side=st.integers(2, 3),
    geometry=st.sampled_from(["free", "orthorhombic", "triclinic", "small_cell"]),
)
def test_random_configurations(seed, n_side, geometry):
    R, box, rc = structure(geometry, seed=seed)
    pot = mdhess.morse(D=1.0, a=2.0, r0=1.1, cutoff=rc)
    H = mdhess.hessian(pot, R, box=box)
    assert rel(H, mdhess.hessian(pot, R, box=box, method="ad")) <= TOL["ad"]
    B = mdhess.hessian(pot, R, box=box, format="bsr")
    assert np.abs(B.toarray() - np.asarray(H)).max() <= 1e-12 * np.abs(np.asarray(H)).max()


def test_jit_reuse_across_sizes_by_bucketing():
    pot = mdhess.lennard_jones(cutoff=2.0)
    from mdhess.pair._compute import blocks_and_check

    before = blocks_and_check._cache_size()
    for k in range(3):
        R, box, _ = structure("orthorhombic", seed=k)
        mdhess.hessian(pot, R, box=box)
    assert blocks_and_check._cache_size() - before <= 1


def test_potential_is_a_pytree_differentiable_in_parameters():
    R, _, _ = structure("free")
    pot = mdhess.lennard_jones(sigma=1.0, epsilon=1.0)
    leaves, tree = jax.tree.flatten(pot)
    assert len(leaves) == 2
    from mdhess.pair._compute import plain_energy
    from mdhess.pair._prepare import Prepared

    args = Prepared(pot, R, None, None, "t").arrays(jnp.float64, pad=False)
    de = jax.grad(lambda p: plain_energy(p, *args[1:-1]))(pot)
    # dE/d epsilon = E / epsilon for LJ
    assert abs(float(de.params["epsilon"]) - mdhess.energy(pot, R)) <= 1e-10 * abs(mdhess.energy(pot, R))


@pytest.mark.parametrize("geometry", ["free", "orthorhombic"])
def test_component_major_layout_is_the_symmetric_permutation(geometry):
    R, box, rc = structure(geometry)
    pot = mdhess.lennard_jones(cutoff=rc)
    n = len(R)
    Hi = np.asarray(mdhess.hessian(pot, R, box=box))
    Hc = np.asarray(mdhess.hessian(pot, R, box=box, layout="component"))
    perm = (np.arange(3)[:, None] + 3 * np.arange(n)[None, :]).ravel()  # row a*N + i <- row 3i + a
    assert np.array_equal(Hc, Hi[np.ix_(perm, perm)])
    assert np.allclose(np.linalg.eigvalsh(Hc), np.linalg.eigvalsh(Hi), rtol=0, atol=1e-10 * np.abs(Hi).max())
    with pytest.raises(mdhess.InputError, match="layout"):
        mdhess.hessian(pot, R, box=box, layout="component", format="bsr")


@pytest.mark.parametrize("geometry", ["free", "free_cutoff", "triclinic"])
def test_prepared_hessian_on_another_thread_equals_hessian(geometry):
    """``prepare_hessian`` (host half: checks, pair list, memory plan) on a worker thread, then
    ``compute()`` here: the same matrices as ``hessian`` in every format and layout (the CLI
    prepares the next frame this way), and the same errors."""
    from concurrent.futures import ThreadPoolExecutor

    from mdhess.pair._api import prepare_hessian

    R, box, rc = structure(geometry)
    pot = mdhess.lennard_jones(cutoff=rc)
    with ThreadPoolExecutor(1) as pool:
        for fmt, layout in [("bsr", "interleaved"), ("dense", "interleaved"), ("dense", "component")]:
            prep = pool.submit(prepare_hessian, pot, R, box=box, format=fmt).result()
            H = prep.compute(layout)
            ref = mdhess.hessian(pot, R, box=box, format=fmt, layout=layout)
            if fmt == "bsr":
                assert (H != ref).nnz == 0 and H.has_canonical_format
            else:
                assert np.array_equal(np.asarray(H), np.asarray(ref))
    with pytest.raises(mdhess.InputError, match=r"hessian\(format=\.\.\.\)"):
        prepare_hessian(pot, R, box=box, format="csr")
    with pytest.raises(mdhess.InputError, match="dtype"):
        prepare_hessian(pot, R, box=box, dtype="float16")
    with pytest.raises(mdhess.MemoryPlanError):
        prepare_hessian(pot, R, box=box, format="dense", memory_limit="1k")

"""Fault corpus of the library's public arguments: every wrong type, shape or value is refused
with an InputError (or MemoryPlanError) whose message names the argument, and small periodic
cells with long cutoffs give the brute-force lattice sum (no silently wrong number).

The corpus counts quoted in docs/reliability.md come from ``CASES`` (``test_corpus_counts``)."""

import itertools
import signal
import time
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mdhess

R4 = np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.0, 1.2, 0.0], [0.0, 0.0, 1.3]])
LJ = mdhess.lennard_jones(cutoff=2.5)
LJ_FREE = mdhess.lennard_jones()
KA = mdhess.lennard_jones(sigma=[[1.0, 0.8], [0.8, 0.88]], epsilon=[[1.0, 1.5], [1.5, 0.5]], cutoff=2.0)
S4 = np.array([0, 1, 0, 1])
H12 = np.eye(12)
SKEW = np.array([[1.0, 0.0, 0.0], [np.cos(1e-6), np.sin(1e-6), 0.0], [0.0, 0.0, 1.0]])  # 1e-6 rad apart


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block runs past ``seconds``."""

    def _raise(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _phi_vector(r, **_):
    return jnp.stack([r, r])


def _phi_if(r, **_):
    if r < 1.0:  # a Python branch on a traced r
        return 1.0 / r
    return 0.0 * r


def _phi_numpy(r, **_):
    return float(r) ** -12


def _jax_md():
    with jax.numpy_dtype_promotion("standard"):
        return pytest.importorskip("mdhess.plugins.jax_md")


def _jax_md_species_none():
    mjx = _jax_md()
    mjx.hessian(KA, R4, None)  # species are checked before the neighbour list is looked at


# (id, callable, expected exception, regex that must name the argument)
E, M = mdhess.InputError, mdhess.MemoryPlanError
CASES = [
    # -- positions ----------------------------------------------------------------------------
    ("positions-string", lambda: mdhess.energy(LJ, "abc"), E, r"positions=\.\.\.\).*string 'abc'"),
    ("positions-complex", lambda: mdhess.energy(LJ, R4 + 1j), E, r"positions=\.\.\.\).*complex"),
    ("positions-bool", lambda: mdhess.forces(LJ, R4 > 0), E, r"positions=\.\.\.\).*bool"),
    ("positions-object", lambda: mdhess.energy(LJ, [[0, 0, None], [1, 0, 0]]), E, r"positions=\.\.\.\).*object"),
    ("positions-ragged", lambda: mdhess.energy(LJ, [[0, 0, 0], [1, 0]]), E, r"positions=\.\.\.\)"),
    ("positions-shape", lambda: mdhess.hessian(LJ, np.zeros((4, 2))), E, r"positions=\.\.\.\) expects shape"),
    ("positions-nan", lambda: mdhess.hvp(LJ, [[0, 0, 0], [1, 1, np.nan]]), E, r"positions=\.\.\.\) has non-finite"),
    ("positions-one-atom", lambda: mdhess.energy(LJ, [[0.0, 0, 0]]), E, r"positions=\.\.\.\) needs at least 2"),
    ("positions-coincident", lambda: mdhess.energy(LJ, np.vstack([R4, R4[1]])), E, r"positions=\.\.\.\) has interacting atoms 1 and 4 at the same"),
    ("positions-1e13", lambda: mdhess.energy(LJ, R4 + 1e13), E, r"positions=\.\.\.\) are too large for float64 resolution"),
    ("positions-1e13-free", lambda: mdhess.hessian(LJ_FREE, R4 + 1e13), E, r"positions=\.\.\.\) are too large for float64 resolution"),
    ("positions-stress-nan", lambda: mdhess.stress(LJ, [[0, 0, 0], [1, np.inf, 0]], box=5.0), E, r"positions=\.\.\.\) has non-finite"),
    # -- box -----------------------------------------------------------------------------------
    ("box-string", lambda: mdhess.energy(LJ, R4, box="6"), E, r"box=\.\.\.\).*string '6'"),
    ("box-true", lambda: mdhess.energy(LJ, R4, box=True), E, r"box=\.\.\.\).*bool True"),
    ("box-complex", lambda: mdhess.forces(LJ, R4, box=[6 + 1j, 6, 6]), E, r"box=\.\.\.\).*complex"),
    ("box-bytes", lambda: mdhess.energy(LJ, R4, box=b"6"), E, r"box=\.\.\.\).*bytes"),
    ("box-shape", lambda: mdhess.hessian(LJ, R4, box=np.ones((2, 2))), E, r"box=\.\.\.\) must be None, a scalar"),
    ("box-negative", lambda: mdhess.energy(LJ, R4, box=[5.0, -1.0, 5.0]), E, r"box=\.\.\.\) edge lengths must be finite and > 0"),
    ("box-nan", lambda: mdhess.energy(LJ, R4, box=np.full((3, 3), np.nan)), E, r"box=\.\.\.\) has non-finite"),
    ("box-singular", lambda: mdhess.energy(LJ, R4, box=[[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]]), E, r"box=\.\.\.\) is singular"),
    ("box-skewed", lambda: mdhess.energy(LJ, R4[:2] * 0.1, box=SKEW), E, r"box=\.\.\.\) is a cell too skewed.*heights"),
    ("box-skewed-hessian", lambda: mdhess.hessian(LJ, R4[:2] * 0.1, box=SKEW, memory_limit="1G"), E, r"box=\.\.\.\) is a cell too skewed"),
    ("box-no-cutoff", lambda: mdhess.hessian(LJ_FREE, R4, box=10.0), E, r"box=\.\.\.\) is periodic but the potential"),
    ("box-stress-free", lambda: mdhess.stress(LJ, R4, box=None), E, r"stress\(box=None\)"),
    ("box-frames-string", lambda: list(mdhess.hessian_frames(LJ, [R4], boxes=["6"])), E, r"frame 0: .*box=\.\.\.\).*string"),
    # -- species -------------------------------------------------------------------------------
    ("species-2**32+1", lambda: mdhess.energy(KA, R4, species=[0, 1, 0, 2**32 + 1]), E, r"species=\.\.\.\) value 4294967297 at atom 3"),
    ("species-1e10", lambda: mdhess.energy(KA, R4, species=[0, 1, 0, 1e10]), E, r"species=\.\.\.\) value 10000000000\.0 at atom 3"),
    ("species-2**70", lambda: mdhess.energy(KA, R4, species=[0, 1, 0, 2**70]), E, r"species=\.\.\.\) value .* at atom 3"),
    ("species-half", lambda: mdhess.energy(KA, R4, species=[0, 1, 0.5, 1]), E, r"species=\.\.\.\) must be integers 0\.\.S-1; got 0\.5 at atom 2"),
    ("species-1.5", lambda: mdhess.hessian(KA, R4, species=[0, 1.5, 0, 1]), E, r"species=\.\.\.\) must be integers.*1\.5 at atom 1"),
    ("species-nan", lambda: mdhess.energy(KA, R4, species=[0, np.nan, 0, 1]), E, r"species=\.\.\.\) must be integers"),
    ("species-strings", lambda: mdhess.energy(KA, R4, species=["Ar", "Kr", "Ar", "Kr"]), E, r"species=\.\.\.\) must be integers.*string"),
    ("species-bool", lambda: mdhess.energy(KA, R4, species=[True, False, True, False]), E, r"species=\.\.\.\) must be integers.*bool"),
    ("species-complex", lambda: mdhess.energy(KA, R4, species=S4 + 0j), E, r"species=\.\.\.\) must be integers.*complex"),
    ("species-negative", lambda: mdhess.energy(KA, R4, species=[0, -1, 0, 1]), E, r"species=\.\.\.\) value -1 at atom 1"),
    ("species-range", lambda: mdhess.forces(KA, R4, species=[0, 1, 2, 0]), E, r"species=\.\.\.\) value 2 at atom 2 is outside"),
    ("species-shape", lambda: mdhess.forces(KA, R4, species=[0, 1]), E, r"species=\.\.\.\) expects shape \(4,\)"),
    ("species-none-energy", lambda: mdhess.energy(KA, R4), E, r"energy\(species=None\).*S=2"),
    ("species-none-forces", lambda: mdhess.forces(KA, R4), E, r"forces\(species=None\).*S=2"),
    ("species-none-hessian", lambda: mdhess.hessian(KA, R4), E, r"hessian\(species=None\).*S=2"),
    ("species-none-hvp", lambda: mdhess.hvp(KA, R4), E, r"hvp\(species=None\).*S=2"),
    ("species-none-stress", lambda: mdhess.stress(KA, R4, box=6.0), E, r"stress\(species=None\).*S=2"),
    ("species-none-frames", lambda: list(mdhess.hessian_frames(KA, [R4, R4])), E, r"frame 0: hessian_frames\(species=None\).*S=2"),
    ("species-none-energy_fn", lambda: mdhess.energy_fn(KA), E, r"energy_fn\(species=None\).*S=2"),
    ("species-none-forces_fn", lambda: mdhess.forces_fn(KA), E, r"forces_fn\(species=None\).*S=2"),
    ("species-fraction-energy_fn", lambda: mdhess.energy_fn(KA, species=[0, 0.5]), E, r"energy_fn\(species=\.\.\.\) must be integers"),
    ("species-none-jax_md", _jax_md_species_none, E, r"jax_md\.hessian\(species=None\).*S=2"),
    # -- dtype, format, method, layout, store_blocks -----------------------------------------
    ("dtype-int32", lambda: mdhess.hessian(LJ, R4, dtype="int32"), E, r"dtype=\.\.\.\) must be float32 or float64"),
    ("dtype-float16", lambda: mdhess.hvp(LJ, R4, dtype="float16"), E, r"dtype=\.\.\.\) must be float32 or float64"),
    ("dtype-bool", lambda: mdhess.hessian(LJ, R4, dtype=True), E, r"dtype=\.\.\.\) must be float32 or float64"),
    ("dtype-object", lambda: mdhess.hessian(LJ, R4, dtype=object()), E, r"dtype=\.\.\.\) must be float32 or float64"),
    ("dtype-frames", lambda: list(mdhess.hessian_frames(LJ, [R4], dtype="complex64")), E, r"dtype=\.\.\.\) must be float32 or float64"),
    ("format-csr", lambda: mdhess.hessian(LJ, R4, format="csr"), E, r"format=\.\.\.\) must be one of"),
    ("format-none", lambda: mdhess.hessian(LJ, R4, format=None), E, r"format=\.\.\.\) must be one of"),
    ("format-frames", lambda: list(mdhess.hessian_frames(LJ, [R4], format="coo")), E, r"format=\.\.\.\) must be one of"),
    ("method-fd", lambda: mdhess.hessian(LJ, R4, method="fd"), E, r"method=\.\.\.\) must be one of"),
    ("method-int", lambda: mdhess.hessian(LJ, R4, method=2), E, r"method=\.\.\.\) must be one of"),
    ("layout-rows", lambda: mdhess.hessian(LJ, R4, layout="rows"), E, r"layout=\.\.\.\) must be one of"),
    ("layout-bsr", lambda: mdhess.hessian(LJ, R4, layout="component", format="bsr"), E, r"layout='component'\) applies to format='dense'"),
    ("store_blocks-string", lambda: mdhess.hvp(LJ, R4, store_blocks="no"), E, r"store_blocks=\.\.\.\) must be True or False"),
    ("batch_size-zero", lambda: list(mdhess.hessian_frames(LJ, [R4], batch_size=0)), E, r"batch_size=\.\.\.\)"),
    # -- memory_limit --------------------------------------------------------------------------
    ("memory_limit-nan", lambda: mdhess.hessian(LJ, R4, memory_limit=float("nan")), E, r"memory_limit=\.\.\. must be a positive number of bytes .*; got nan"),
    ("memory_limit-negative", lambda: mdhess.hessian(LJ, R4, memory_limit=-5), E, r"memory_limit=\.\.\. must be a positive number of bytes .*; got -5"),
    ("memory_limit-inf", lambda: mdhess.hessian(LJ, R4, memory_limit=float("inf")), E, r"memory_limit=\.\.\. .*got inf"),
    ("memory_limit-bool", lambda: mdhess.hessian(LJ, R4, memory_limit=True), E, r"memory_limit=\.\.\. .*got True"),
    ("memory_limit-word", lambda: mdhess.hessian(LJ, R4, memory_limit="lots"), E, r"memory_limit=\.\.\. .*got 'lots'"),
    ("memory_limit-list", lambda: mdhess.hessian(LJ, R4, memory_limit=[8]), E, r"memory_limit=\.\.\. .*got \[8\]"),
    ("memory_limit-frames", lambda: list(mdhess.hessian_frames(LJ, [R4], memory_limit="-1G")), E, r"memory_limit=\.\.\. "),
    ("memory_limit-hessian_of", lambda: mdhess.hessian_of(lambda R: jnp.sum(R**2), R4, memory_limit=float("nan")), E, r"memory_limit=\.\.\. "),
    ("memory_limit-refused", lambda: mdhess.hessian(LJ, R4, memory_limit=100), M, r"exceeds the memory limit"),
    # -- potentials ----------------------------------------------------------------------------
    ("potential-string", lambda: mdhess.energy("lj", R4), E, r"energy\(potential=\.\.\.\) must be an mdhess potential"),
    ("sigma-true", lambda: mdhess.lennard_jones(sigma=True), E, r"lennard_jones\(sigma=\.\.\.\).*bool True"),
    ("epsilon-string", lambda: mdhess.lennard_jones(epsilon="1.5"), E, r"lennard_jones\(epsilon=\.\.\.\).*string '1\.5'"),
    ("epsilon-complex", lambda: mdhess.lennard_jones(epsilon=1 + 2j), E, r"lennard_jones\(epsilon=\.\.\.\).*complex"),
    ("sigma-nan", lambda: mdhess.lennard_jones(sigma=np.nan), E, r"lennard_jones\(sigma=\.\.\.\) must be finite"),
    ("sigma-asymmetric", lambda: mdhess.lennard_jones(sigma=[[1, 2], [3, 4]]), E, r"lennard_jones\(sigma=\.\.\.\) must be symmetric"),
    ("sigma-shape", lambda: mdhess.lennard_jones(sigma=[1.0, 2.0]), E, r"lennard_jones\(sigma=\.\.\.\) must be a scalar or a square"),
    ("tables-disagree", lambda: mdhess.lennard_jones(sigma=np.ones((2, 2)), epsilon=np.ones((3, 3))), E, r"species tables disagree"),
    ("cutoff-string", lambda: mdhess.lennard_jones(cutoff="2.5"), E, r"lennard_jones\(cutoff=\.\.\.\).*string"),
    ("cutoff-true", lambda: mdhess.morse(cutoff=True), E, r"morse\(cutoff=\.\.\.\).*bool"),
    ("cutoff-negative", lambda: mdhess.yukawa(cutoff=-1.0), E, r"yukawa\(cutoff=\.\.\.\) must be > 0"),
    ("switch-no-cutoff", lambda: mdhess.gaussian(switch=1.0), E, r"gaussian\(switch=1\.0\) needs a cutoff"),
    ("switch-beyond", lambda: mdhess.buckingham(cutoff=2.0, switch=3.0), E, r"buckingham\(switch=\.\.\.\) must satisfy"),
    ("switch-string", lambda: mdhess.harmonic(cutoff=2.0, switch="1"), E, r"harmonic\(switch=\.\.\.\).*string"),
    ("alpha-bool", lambda: mdhess.soft_sphere(alpha=False), E, r"soft_sphere\(alpha=\.\.\.\).*bool"),
    ("charges-string", lambda: mdhess.coulomb(charges=["1", "-1"]), E, r"coulomb\(charges=\.\.\.\).*string"),
    ("charges-shape", lambda: mdhess.coulomb(charges=[[1.0]]), E, r"coulomb\(charges=\.\.\.\) must be a \(S,\) vector"),
    ("coulomb-both", lambda: mdhess.coulomb(qq=1.0, charges=[1.0]), E, r"coulomb\(\.\.\.\) needs exactly one of qq or charges"),
    ("qq-bool", lambda: mdhess.coulomb(qq=True), E, r"coulomb\(qq=\.\.\.\).*bool"),
    ("phi-not-callable", lambda: mdhess.pair_potential(3.0), E, r"pair_potential\(phi=\.\.\.\) must be callable"),
    ("phi-vector", lambda: mdhess.pair_potential(_phi_vector, cutoff=2.0), E, r"pair_potential\(phi=\.\.\.\) must be a JAX function of a scalar.*returned shape \(2,\)"),
    ("phi-python-if", lambda: mdhess.pair_potential(_phi_if, cutoff=2.0), E, r"pair_potential\(phi=\.\.\.\).*jnp\.where"),
    ("phi-numpy", lambda: mdhess.pair_potential(_phi_numpy), E, r"pair_potential\(phi=\.\.\.\).*jax\.numpy"),
    ("phi-bad-params", lambda: mdhess.pair_potential(lambda r, a: a / r, b=1.0), E, r"pair_potential\(phi=\.\.\.\).*TypeError"),
    ("param-string", lambda: mdhess.pair_potential(lambda r, a: a / r, a="x"), E, r"pair_potential\(a=\.\.\.\).*string"),
    ("elastic-cutoff-bool", lambda: mdhess.elastic_network(R4, cutoff=True), E, r"elastic_network\(cutoff=\.\.\.\).*bool"),
    ("elastic-k-string", lambda: mdhess.elastic_network(R4, cutoff=2.0, k="1"), E, r"elastic_network\(k=\.\.\.\).*string"),
    ("elastic-positions", lambda: mdhess.elastic_network(R4 + 1j, cutoff=2.0), E, r"elastic_network\(reference_positions=\.\.\.\).*complex"),
    ("elastic-box", lambda: mdhess.elastic_network(R4, cutoff=2.0, box="5"), E, r"elastic_network\(box=\.\.\.\).*string"),
    # -- normal_modes --------------------------------------------------------------------------
    ("nm-H-string", lambda: mdhess.normal_modes("abc"), E, r"normal_modes\(H=\.\.\.\).*string"),
    ("nm-H-complex", lambda: mdhess.normal_modes(H12 + 0j), E, r"normal_modes\(H=\.\.\.\).*complex"),
    ("nm-H-shape", lambda: mdhess.normal_modes(np.eye(4)), E, r"normal_modes\(H=\.\.\.\) must be \(3N, 3N\)"),
    ("nm-H-asymmetric", lambda: mdhess.normal_modes(H12 + np.triu(np.ones((12, 12)), 1)), E, r"normal_modes\(H=\.\.\.\) is not symmetric"),
    ("nm-H-nan", lambda: mdhess.normal_modes(H12 * np.nan), E, r"normal_modes\(H=\.\.\.\) has non-finite"),
    ("nm-masses-string", lambda: mdhess.normal_modes(H12, ["1"] * 4), E, r"normal_modes\(masses=\.\.\.\).*string"),
    ("nm-masses-bool", lambda: mdhess.normal_modes(H12, [True] * 4), E, r"normal_modes\(masses=\.\.\.\).*bool"),
    ("nm-masses-negative", lambda: mdhess.normal_modes(H12, [1, 1, -1, 1]), E, r"normal_modes\(masses=\.\.\.\) must be finite and > 0"),
    ("nm-masses-shape", lambda: mdhess.normal_modes(H12, [1, 1]), E, r"normal_modes\(masses=\.\.\.\) needs one mass per atom"),
    ("nm-k-zero", lambda: mdhess.normal_modes(H12, k=0), E, r"normal_modes\(k=\.\.\.\)"),
    ("nm-k-bool", lambda: mdhess.normal_modes(H12, k=True), E, r"normal_modes\(k=\.\.\.\)"),
    ("nm-which", lambda: mdhess.normal_modes(H12, which="up"), E, r"normal_modes\(which=\.\.\.\) must be one of"),
    ("nm-project", lambda: mdhess.normal_modes(H12, project="all"), E, r"normal_modes\(project=\.\.\.\) must be one of"),
    ("nm-solver", lambda: mdhess.normal_modes(H12, solver="arpack"), E, r"normal_modes\(solver=\.\.\.\) must be one of"),
    ("nm-units", lambda: mdhess.normal_modes(H12, units="furlong"), E, r"units"),
    ("nm-sigma-bool", lambda: mdhess.normal_modes(H12, sigma=True), E, r"normal_modes\(sigma=\.\.\.\)"),
    ("nm-tol-negative", lambda: mdhess.normal_modes(H12, tol=-1.0), E, r"normal_modes\(tol=\.\.\.\) must be a finite real number > 0"),
    ("nm-tol-nan", lambda: mdhess.normal_modes(H12, tol=float("nan")), E, r"normal_modes\(tol=\.\.\.\)"),
    ("nm-tol-string", lambda: mdhess.normal_modes(H12, tol="1e-8"), E, r"normal_modes\(tol=\.\.\.\)"),
    ("nm-zero_tol-negative", lambda: mdhess.normal_modes(H12, zero_tol=-1e-8), E, r"normal_modes\(zero_tol=\.\.\.\)"),
    ("nm-maxiter-zero", lambda: mdhess.normal_modes(H12, maxiter=0), E, r"normal_modes\(maxiter=\.\.\.\) must be an integer >= 1"),
    ("nm-maxiter-float", lambda: mdhess.normal_modes(H12, maxiter=1.5), E, r"normal_modes\(maxiter=\.\.\.\)"),
    ("nm-seed-string", lambda: mdhess.normal_modes(H12, seed="a"), E, r"normal_modes\(seed=\.\.\.\)"),
    ("nm-positions-shape", lambda: mdhess.normal_modes(H12, positions=np.zeros((3, 3))), E, r"normal_modes\(positions=\.\.\.\) expects shape \(4, 3\) to match H"),
    ("nm-positions-complex", lambda: mdhess.normal_modes(H12, positions=R4 + 1j), E, r"normal_modes\(positions=\.\.\.\).*complex"),
    ("nm-box-string", lambda: mdhess.normal_modes(H12, box="6"), E, r"normal_modes\(box=\.\.\.\).*string"),
    ("nm-box-true", lambda: mdhess.normal_modes(H12, box=True), E, r"normal_modes\(box=\.\.\.\).*bool"),
]


@pytest.mark.parametrize("fn,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_is_refused(fn, exc, match):
    with deadline(30), pytest.raises(exc, match=match) as info:
        fn()
    assert type(info.value) is exc  # not a subclass, not a raw JAX/numpy error


def test_corpus_counts():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 100


# -- image sums: every image within the cutoff (brute-force reference) ---------------------------
def _brute_energy(pot_phi, rc, R, cell):
    """Shifted-LJ energy over every atom-image pair within rc by a plain loop over image shifts."""
    cell = np.asarray(cell, float)
    vol = abs(np.linalg.det(cell))
    h = vol / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    n = np.ceil(rc / h).astype(int) + 1  # one more shell than needed
    E = 0.0
    for S in itertools.product(*(range(-m, m + 1) for m in n)):
        t = np.asarray(S) @ cell
        for i in range(len(R)):
            for j in range(len(R)):
                if i == j and not any(S):
                    continue
                r = np.linalg.norm(R[j] - R[i] + t)
                if r < rc:
                    E += 0.5 * (pot_phi(r) - pot_phi(rc))
    return E


def _lj(r):
    return 4.0 * (r**-12 - r**-6)


TRICLINIC = np.array([[1.9, 0.0, 0.0], [0.6, 1.7, 0.0], [-0.4, 0.5, 2.1]])


@pytest.fixture(params=["vesin", "lattice"])
def image_lister(request, monkeypatch):
    """Run a test with vesin's list (cutoffs up to VESIN_MAX_CUTOFF_WIDTHS heights) and with the
    direct lattice enumeration mdhess uses beyond that (forced from 0 heights)."""
    from mdhess.pair import _pairs

    if request.param == "lattice":
        monkeypatch.setattr(_pairs, "VESIN_MAX_CUTOFF_WIDTHS", 0.0)
    return request.param


@pytest.mark.parametrize(
    "cell,n_atoms,widths",
    [
        (np.diag([1.9, 1.9, 1.9]), 2, [0.5, 1.5, 3.0, 6.3]),
        (np.diag([1.5, 2.0, 2.5]), 3, [0.9, 2.2, 4.0]),
        (TRICLINIC, 2, [0.6, 1.4, 3.5]),
    ],
    ids=["cubic", "orthorhombic", "triclinic"],
)
def test_small_cell_energy_matches_brute_force(cell, n_atoms, widths, image_lister):
    rng = np.random.default_rng(n_atoms)
    frac = rng.uniform(0, 1, (n_atoms, 3))
    R = frac @ cell
    R[0] = 0.0
    h = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    for w in widths:
        rc = w * h.min()
        rc = max(rc, 0.95)  # LJ below r ~ 0.9 is stiff; keep a meaningful shell
        E = mdhess.energy(mdhess.lennard_jones(cutoff=rc), R, box=cell)
        ref = _brute_energy(_lj, rc, R, cell)
        assert E == pytest.approx(ref, rel=1e-10, abs=1e-10), (w, rc)


def test_issue_two_atoms_box_1_9_cutoff_12():
    """The reported case: two atoms in a cube of 1.9 with cutoff 12 (6.3 cell widths)."""
    R = np.array([[0, 0, 0], [0.9, 0.2, 0.1]])
    E = mdhess.energy(mdhess.lennard_jones(cutoff=12.0), R, box=1.9)
    assert E == pytest.approx(_brute_energy(_lj, 12.0, R, np.eye(3) * 1.9), rel=1e-12)


def test_long_cutoff_hessian_matches_ad_and_sums_images(image_lister):
    """Hessian in a small cell with the cutoff over several widths: per-pair blocks equal
    jax.hessian of the energy, and rows sum to zero (translation invariance)."""
    R = np.array([[0.0, 0, 0], [0.9, 0.2, 0.1], [0.3, 1.1, 0.7]])
    pot = mdhess.lennard_jones(cutoff=5.0, switch=4.0)
    H = np.asarray(mdhess.hessian(pot, R, box=TRICLINIC))
    Had = np.asarray(mdhess.hessian(pot, R, box=TRICLINIC, method="ad"))
    assert np.abs(H - Had).max() <= 1e-10 * np.abs(H).max()
    assert np.abs(H.reshape(3, 3, 3, 3).sum(axis=2)).max() <= 1e-10 * np.abs(H).max()


@pytest.mark.parametrize("cell", [np.diag([1.0, 1.3, 1.7]), TRICLINIC / 1.9], ids=["orthorhombic", "triclinic"])
@pytest.mark.parametrize("widths", [0.5, 1.0, 2.5, 7.0])
def test_lattice_pairs_equal_vesin_pairs(cell, widths):
    """The direct enumeration lists exactly vesin's atom-image pairs where vesin was checked."""
    from mdhess.pair import _pairs

    R = np.random.default_rng(7).uniform(0, 1, (5, 3)) @ cell
    rc = widths * _pairs.perpendicular_widths(cell).min()
    a = _pairs.lattice_pairs(R, cell, rc)
    b = _pairs.neighbor_pairs(R, cell, rc)

    def multiset(pl, keep):
        lo, hi = np.minimum(pl.i, pl.j)[keep], np.maximum(pl.i, pl.j)[keep]
        return sorted(zip(lo.tolist(), hi.tolist(), np.round(pl.distances[keep], 9).tolist()))

    keep = b.distances < rc
    assert a.n_pairs == int(keep.sum()) > 0
    assert multiset(a, np.ones(a.n_pairs, bool)) == multiset(b, keep)


@pytest.mark.parametrize("cutoff", [1e6, 1e10])
def test_huge_cutoff_refused_before_building(cutoff):
    R = np.array([[0, 0, 0], [0.9, 0.2, 0.1]])
    t = time.perf_counter()
    with deadline(20), pytest.raises(mdhess.MemoryPlanError, match=r"atom-image pairs.*exceeds the memory limit"):
        mdhess.energy(mdhess.lennard_jones(cutoff=cutoff), R, box=1.9)
    assert time.perf_counter() - t < 5


def test_list_over_memory_limit_refused_quickly():
    """N = 64, box 4, cutoff 60 under 1G: about 3e7 pairs, refused before any list is built."""
    g = np.arange(4.0)
    R = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + 0.01
    t = time.perf_counter()
    with deadline(20), pytest.raises(mdhess.MemoryPlanError, match=r"N=64 .*cutoff 60.*about 2\.9e\+07 atom-image pairs.*1\.00 GiB"):
        mdhess.hessian(mdhess.lennard_jones(cutoff=60.0), R, box=4.0, memory_limit="1G")
    assert time.perf_counter() - t < 5


def test_skewed_cell_refused_quickly():
    t = time.perf_counter()
    with deadline(20), pytest.raises(mdhess.InputError, match=r"box=\.\.\.\) is a cell too skewed.*heights \[1\.e-06 1\.e-06 1\.e\+00\]"):
        mdhess.energy(LJ, [[0, 0, 0], [0.1, 0.05, 0.3]], box=SKEW)
    assert time.perf_counter() - t < 5


# -- float32 with unwrapped positions -------------------------------------------------------------
def test_float32_unwrapped_positions_wrapped_in_float64():
    rng = np.random.default_rng(4)
    g = np.arange(4) * 1.1
    R = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + rng.uniform(-0.05, 0.05, (64, 3))
    L = 4.4
    pot = mdhess.lennard_jones(cutoff=2.0, switch=1.6)
    H64 = np.asarray(mdhess.hessian(pot, R, box=L))
    shifted = R + 8800 * L
    H64s = np.asarray(mdhess.hessian(pot, shifted, box=L))
    H32 = np.asarray(mdhess.hessian(pot, R, box=L, dtype="float32"))
    H32s = np.asarray(mdhess.hessian(pot, shifted, box=L, dtype="float32"))
    ref = np.linalg.norm(H64)
    assert np.linalg.norm(H64s - H64) / ref < 1e-9
    assert np.linalg.norm(H32 - H64) / ref < 1e-5
    assert np.linalg.norm(H32s - H64) / ref < 1e-5  # was 7e-3 before the float64 wrap
    # the other calls that cast positions: hvp, and batched frames
    v = rng.normal(size=3 * 64)
    hv = np.asarray(mdhess.hvp(pot, shifted, box=L, dtype="float32") @ v.astype(np.float32)).astype(np.float64)
    assert np.linalg.norm(hv - H64 @ v) / np.linalg.norm(H64 @ v) < 1e-5
    (Hf,) = list(mdhess.hessian_frames(pot, [shifted], boxes=[L], dtype="float32"))
    assert np.linalg.norm(np.asarray(Hf) - H64) / ref < 1e-5


def test_float64_never_wrapped():
    """float64 keeps the positions and shifts as given (bit-for-bit results); only float32 in a
    periodic cell is wrapped, and the wrap keeps every displacement."""
    from mdhess.pair._prepare import Prepared

    R = np.array([[0.1, 0.2, 0.3], [1.0, 0.9, 1.1], [2.1, 2.0, 1.9]]) + [30.0, -9.0, 3.0]
    p = Prepared(mdhess.lennard_jones(cutoff=2.0), R, 3.0, None, "hessian")
    R64, pl64 = p.wrapped(np.float64)
    assert R64 is p.R and pl64 is p.pairs
    R32, pl32 = p.wrapped(np.float32)
    assert np.all((R32 >= -1e-12) & (R32 < 3.0 + 1e-12))
    np.testing.assert_allclose(pl32.displacements(R32), p.pairs.displacements(p.R), rtol=0, atol=1e-12)


def test_potential_without_tables_may_omit_species():
    assert np.isfinite(mdhess.energy(LJ, R4))
    assert np.isfinite(mdhess.energy(KA, R4, species=S4))
    assert np.isfinite(mdhess.energy(KA, R4, species=np.array([0.0, 1.0, 0.0, 1.0])))  # integral floats
    assert np.isfinite(mdhess.energy(mdhess.coulomb(charges=[1.0], cutoff=3.0), R4))  # (1, 1) tables

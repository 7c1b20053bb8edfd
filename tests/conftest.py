"""Shared fixtures: float64 + strict promotion, the tolerance table, the potential registry and
test structures. Every potential registered in POTENTIALS is tested automatically against dense
AD, finite differences and the layout/invariant checks in test_core.py."""

import os

# two pytest workers share the machine (pyproject addopts: -n 2): on a GPU neither may claim 75%
# of its memory up front, as JAX does by default
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mdhess

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Tolerances, float64.
#  AD: pair blocks and jax.hessian use the same scalar derivatives summed in a different order:
#      agreement to a few ulps of the largest entries -> 1e-12 relative Frobenius.
#  FD: central differences of forces, step h = 1e-5 (length units ~1): truncation h^2 |F'''| ~ 1e-10
#      relative, rounding eps |F| / h ~ 1e-11 relative -> 1e-6 relative Frobenius leaves margin for
#      stiff repulsive cores.
TOL = {"ad": 1e-12, "fd": 1e-6, "layout": 1e-12, "peer": 1e-12}
FD_STEP = 1e-5


def _tab(a, b, c):
    return np.array([[a, b], [b, c]])


# name -> factory(two_species: bool, cutoff: float | None) -> potential
POTENTIALS = {
    "lennard_jones": lambda two, rc: mdhess.lennard_jones(
        sigma=_tab(1.0, 0.8, 0.88) if two else 1.0, epsilon=_tab(1.0, 1.5, 0.5) if two else 1.0, cutoff=rc
    ),
    "lennard_jones_switch": lambda two, rc: mdhess.lennard_jones(
        sigma=_tab(1.0, 0.8, 0.88) if two else 1.0,
        epsilon=1.0,
        cutoff=rc if rc is not None else 2.5,
        switch=0.8 * (rc if rc is not None else 2.5),
    ),
    "morse": lambda two, rc: mdhess.morse(D=_tab(1.0, 0.7, 1.3) if two else 1.0, a=2.0, r0=1.1, cutoff=rc),
    "soft_sphere_harmonic": lambda two, rc: mdhess.soft_sphere(
        sigma=_tab(1.3, 1.2, 1.25) if two else 1.3, epsilon=1.0, alpha=2.0
    ),
    "soft_sphere_hertz": lambda two, rc: mdhess.soft_sphere(
        sigma=_tab(1.3, 1.2, 1.25) if two else 1.3, epsilon=1.0, alpha=2.5
    ),
    "coulomb": lambda two, rc: mdhess.coulomb(charges=[1.0, -1.0] if two else [0.5], cutoff=rc),
    "coulomb_dsf": lambda two, rc: mdhess.coulomb(
        charges=[1.0, -1.0] if two else [0.5], damping=0.3, cutoff=rc if rc is not None else 2.5
    ),
    "buckingham": lambda two, rc: mdhess.buckingham(A=_tab(100.0, 80.0, 90.0) if two else 100.0, rho=0.25, C=1.0, cutoff=rc),
    "yukawa": lambda two, rc: mdhess.yukawa(A=_tab(1.0, 0.5, 2.0) if two else 1.0, kappa=1.5, cutoff=rc),
    "gaussian": lambda two, rc: mdhess.gaussian(sigma=_tab(1.0, 0.9, 1.1) if two else 1.0, epsilon=2.0, cutoff=rc),
    "harmonic": lambda two, rc: mdhess.harmonic(k=_tab(1.0, 2.0, 3.0) if two else 1.0, r0=1.0, cutoff=rc),
    "custom_r": lambda two, rc: mdhess.pair_potential(lambda r, c: c * r, c=_tab(1.0, 2.0, 0.5) if two else 1.0, cutoff=rc),
    "per_pair_cutoff": lambda two, rc: mdhess.lennard_jones(
        sigma=_tab(1.0, 0.8, 0.88) if two else 1.0,
        epsilon=_tab(1.0, 1.5, 0.5) if two else 1.0,
        cutoff=(2.5 * _tab(1.0, 0.8, 0.88) if two else 2.5) if rc is not None else None,
    ),
}


def lattice(n_side, spacing=1.1, rattle=0.08, seed=0):
    """Rattled simple-cubic block of n_side^3 atoms (no two closer than ~spacing - 2 rattle*sqrt3)."""
    rng = np.random.default_rng(seed)
    g = np.arange(n_side) * spacing
    R = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return R + rng.uniform(-rattle, rattle, R.shape)


def structure(geometry: str, seed: int = 0):
    """(positions, box, cutoff) for a geometry. Periodic boxes hold a rattled lattice that tiles
    the box, so image distances are like the interior ones."""
    rng = np.random.default_rng(seed + 100)
    if geometry == "free":
        return lattice(3, seed=seed)[:20], None, None
    if geometry == "free_cutoff":
        return lattice(3, seed=seed)[:20], None, 2.0
    if geometry == "orthorhombic":
        R = lattice(4, seed=seed)
        return R, np.array([4.4, 4.4, 4.4]), 2.0
    if geometry == "triclinic":
        cell = np.array([[4.4, 0.0, 0.0], [0.6, 4.4, 0.0], [0.4, -0.5, 4.4]])
        frac = (lattice(4, spacing=1.0, rattle=0.0) + 0.1) / 4.0
        R = frac @ cell + rng.uniform(-0.06, 0.06, (64, 3))
        return R, cell, 2.0
    if geometry == "small_cell":  # cutoff 2.5 > half the 2.2 box: many images per pair
        R = lattice(2, seed=seed)
        return R, np.array([2.2, 2.2, 2.2]), 2.5
    raise ValueError(geometry)


GEOMETRIES = ["free", "free_cutoff", "orthorhombic", "triclinic", "small_cell"]


def species_for(n, two, seed=0):
    if not two:
        return None
    s = np.zeros(n, dtype=np.int32)
    s[np.random.default_rng(seed + 7).permutation(n)[: max(1, n // 5)]] = 1
    return s


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_kernels():
    """Drop JAX's compiled executables after each test module: hundreds of modules' kernels
    (every potential x shape x layout) otherwise stay resident for the whole run and the default
    run's peak memory grows past 4 GB. Within a module the cache is kept, so shared fixtures
    compile once."""
    yield
    jax.clear_caches()


# MDHESS_CPU_DURATIONS=25 pytest ... prints the tests that used the most CPU time (all threads of
# this process, setup + call + teardown): on a shared, loaded machine wall-clock durations say
# little, CPU time still ranks the tests by what they cost on a quiet one.
_CPU_TIMES: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import time

    t0 = time.process_time()
    yield
    _CPU_TIMES[item.nodeid] = time.process_time() - t0


def pytest_terminal_summary(terminalreporter):
    import os

    n = int(os.environ.get("MDHESS_CPU_DURATIONS", "0") or 0)
    if not n or not _CPU_TIMES:
        return
    total = sum(_CPU_TIMES.values())
    terminalreporter.write_line(f"CPU time of the tests: {total:.1f} s; the {n} costliest:")
    by_file: dict[str, float] = {}
    for k, v in _CPU_TIMES.items():
        by_file[k.split("::")[0]] = by_file.get(k.split("::")[0], 0.0) + v
    for k, v in sorted(_CPU_TIMES.items(), key=lambda kv: -kv[1])[:n]:
        terminalreporter.write_line(f"{v:8.2f} s  {k}")
    terminalreporter.write_line("by file:")
    for k, v in sorted(by_file.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{v:8.2f} s  {k}")

"""Nonlinear (cubic, quartic) modes (mdhess.nonlinear_mode) and the C4 cutoff switch.

The nonlinear modes are checked with public calls that do not share the solver's path: the
fixed-point residual recomputed from ``mdhess.hvp`` and ``mdhess.contract3`` / ``contract4``;
kappa, tau, chi against ``mdhess.taylor``; the energy along the mode against ``mdhess.energy``;
the cost against the lowest harmonic mode from ``mdhess.normal_modes``.

The test glass: an 80-atom Kob-Andersen mixture (cutoff 2.0 sigma_ab, C4 switch from 1.6 sigma_ab,
so that every derivative used is continuous) quenched here: L-BFGS on a plain all-pairs copy of the energy written out
below (cheap to compile), then Newton steps with mdhess's exact forces and Hessian to
|F| < 1e-10, so it is a minimum of the mdhess potential itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import mdhess
from mdhess.pair._blocks import radial_derivatives_to

SIG = np.array([[1.0, 0.8], [0.8, 0.88]])
EPS = np.array([[1.0, 1.5], [1.5, 0.5]])
N_A, N_B = 64, 16
RC, RON = 2.0, 1.6  # cutoff and switch onset / sigma_ab: 2.0 < L/2 = 2.03 (minimum image below)


def _ka_c4():
    return mdhess.lennard_jones(sigma=SIG, epsilon=EPS, cutoff=RC * SIG, switch=RON * SIG, smoothness=4)


def _quench(seed=1):
    n = N_A + N_B
    L = (n / 1.2) ** (1 / 3)
    sp = np.array([0] * N_A + [1] * N_B, np.int32)
    s, e = SIG[sp[:, None], sp[None, :]], EPS[sp[:, None], sp[None, :]]
    off = ~np.eye(n, dtype=bool)

    def plain(x, soft):  # the same energy as _ka_c4(), all pairs, minimum image (RC < L / 2)
        R = x.reshape(n, 3)
        d = R[:, None, :] - R[None, :, :]
        d = d - L * jnp.round(d / L)
        r = jnp.sqrt(jnp.sum(d * d, -1) + np.eye(n))
        harmonic = 5.0 * jnp.clip(1.0 - r / s, 0.0, None) ** 2  # soft spheres: overlaps out first
        x6 = (s / jnp.maximum(r, 0.5 * s)) ** 6  # (the bound only matters for overlaps)
        u = jnp.clip((r - RON * s) / ((RC - RON) * s), 0.0, 1.0)
        S = 1.0 - u**5 * (126.0 + u * (-420.0 + u * (540.0 + u * (-315.0 + 70.0 * u))))
        lj = jnp.where(r < RC * s, 4.0 * e * (x6 * x6 - x6) * S, 0.0)
        return 0.5 * jnp.sum(jnp.where(off, soft * harmonic + (1.0 - soft) * lj, 0.0))

    vg = jax.jit(jax.value_and_grad(plain))  # one compile for both stages

    def fun(soft):
        return lambda x: tuple(np.asarray(v, np.float64) for v in vg(jnp.asarray(x), soft))

    x = np.random.default_rng(seed).uniform(0, L, 3 * n)
    x = scipy.optimize.minimize(fun(1.0), x, jac=True, method="L-BFGS-B").x
    opts = dict(maxiter=5000, gtol=1e-6, ftol=1e-16, maxcor=30)
    x = scipy.optimize.minimize(fun(0.0), x, jac=True, method="L-BFGS-B", options=opts).x
    pot, R = _ka_c4(), x.reshape(n, 3)
    for _ in range(4):  # Newton on mdhess's own forces (translations: least squares)
        F = np.asarray(mdhess.forces(pot, R, box=L, species=sp)).ravel()
        if np.abs(F).max() < 1e-10:
            break
        H = np.asarray(mdhess.hessian(pot, R, box=L, species=sp))
        R = R + np.linalg.lstsq(H, F, rcond=1e-10)[0].reshape(n, 3)
    F = np.asarray(mdhess.forces(pot, R, box=L, species=sp))
    assert np.abs(F).max() < 1e-10, "the test glass is not a minimum"
    return pot, R, L, sp


@pytest.fixture(scope="module")
def glass():
    return _quench()


@pytest.fixture(scope="module")
def cubic(glass):
    pot, R, L, sp = glass
    return mdhess.nonlinear_mode(pot, R, box=L, species=sp)


def _residual(pot, R, L, sp, mode, masses=None):
    """|A z - lambda M^-1/2 U^(k):x..x| / |A z| from public calls (A = M^-1/2 H M^-1/2, x = M^-1/2 z)."""
    n = R.shape[0]
    m = np.ones(n) if masses is None else masses
    s = np.repeat(1 / np.sqrt(m), 3)
    z, x = mode.vector.ravel(), mode.displacement.ravel()
    np.testing.assert_allclose(x, s * z, rtol=1e-14)
    Az = s * np.asarray(mdhess.hvp(pot, R, box=L, species=sp) @ x)
    X = x.reshape(n, 3)
    if mode.kind == "cubic":
        b = s * np.asarray(mdhess.contract3(pot, R, X, X, box=L, species=sp)).ravel()
        lam = mode.kappa / mode.tau
    else:
        b = s * np.asarray(mdhess.contract4(pot, R, X, X, X, box=L, species=sp)).ravel()
        lam = mode.kappa / mode.chi
    return np.linalg.norm(Az - lam * b) / np.linalg.norm(Az)


def test_cubic_mode_fixed_point_taylor_and_energy(glass, cubic):
    pot, R, L, sp = glass
    assert cubic.converged and cubic.kind == "cubic"
    # the fixed point to 1e-8 (relative), recomputed from hvp and contract3: they agree with the
    # solver's own numbers to rounding (~1e-15), far below the tolerance
    assert _residual(pot, R, L, sp, cubic) <= 1.001e-8
    z = cubic.vector
    assert np.linalg.norm(z) == pytest.approx(1.0, abs=1e-14)
    assert np.abs(z.sum(axis=0)).max() < 1e-12  # translations projected out
    # kappa, tau, chi are the Taylor coefficients of E(R + t z) (1e-10: two orders of summation)
    c = mdhess.taylor(pot, R, cubic.displacement, 4, box=L, species=sp)
    np.testing.assert_allclose(c[2:], [cubic.kappa, cubic.tau, cubic.chi], rtol=1e-10)
    assert cubic.tau < 0 < cubic.kappa  # the sign convention: the barrier lies along +vector
    assert cubic.barrier == pytest.approx(2 * cubic.kappa**3 / (3 * cubic.tau**2), rel=1e-14)
    # the energy along the mode: E(t) - E0 = kappa t^2/2 + tau t^3/6 + chi t^4/24 + O(t^5). With
    # t <= 0.02 the quartic model's error is ~|U5| t^5 / 120 and halves 32x with t; the rounding
    # of E (~1e-12 here) is far below it
    E0 = mdhess.energy(pot, R, box=L, species=sp)
    errs = {}
    for t in (0.02, 0.01, -0.01):
        dE = mdhess.energy(pot, R + t * cubic.displacement, box=L, species=sp) - E0
        model = cubic.kappa * t**2 / 2 + cubic.tau * t**3 / 6 + cubic.chi * t**4 / 24
        errs[t] = abs(dE - model)
        assert errs[t] <= 1e-3 * abs(dE), (t, dE, model)
        assert abs(dE - cubic.kappa * t**2 / 2) > 10 * errs[t]  # the cubic term is really there
    assert errs[0.01] < errs[0.02] / 8  # fifth order: /32 in exact arithmetic


def test_cubic_mode_does_not_increase_the_cost_from_the_lowest_harmonic_mode(glass, cubic):
    pot, R, L, sp = glass
    modes = mdhess.normal_modes(mdhess.hvp(pot, R, box=L, species=sp), k=4, box=L, positions=R)
    e = modes.vectors[:, np.flatnonzero(~modes.zero_mask)[0]].reshape(-1, 3)
    c = mdhess.taylor(pot, R, e, 3, box=L, species=sp)
    start = c[2] ** 3 / c[3] ** 2
    cost = cubic.history["cost"]
    assert cost[0] == pytest.approx(start, rel=1e-6)  # the documented start (LOBPCG tol 1e-8)
    assert np.all(np.diff(cost) <= 1e-12 * cost[:-1])  # never increases along the iteration
    assert cubic.cost <= start and cubic.cost == pytest.approx(cost[-1], rel=1e-10)
    assert len(cost) == cubic.iterations + 1 == len(cubic.history["residual"])


def test_quartic_mode(glass, cubic):
    pot, R, L, sp = glass
    q = mdhess.nonlinear_mode(pot, R, kind="quartic", box=L, species=sp, z0=cubic.vector)
    assert q.converged and q.barrier is None and q.chi > 0
    assert _residual(pot, R, L, sp, q) <= 1.001e-8
    assert np.all(np.diff(q.history["cost"]) <= 1e-12 * q.history["cost"][:-1])
    c = mdhess.taylor(pot, R, q.displacement, 4, box=L, species=sp)
    np.testing.assert_allclose(c[2:], [q.kappa, q.tau, q.chi], rtol=1e-10)
    assert q.cost == pytest.approx(q.kappa**2 / q.chi, rel=1e-14)


def test_masses_use_mass_weighted_coordinates(glass, cubic):
    pot, R, L, sp = glass
    m = np.where(sp == 0, 1.0, 2.5)
    mode = mdhess.nonlinear_mode(pot, R, box=L, species=sp, masses=m, z0=cubic.vector * np.sqrt(m)[:, None])
    assert mode.converged
    assert _residual(pot, R, L, sp, mode, masses=m) <= 1.001e-8
    # orthogonal to the mass-weighted translations sqrt(m_i) e_a: the centre of mass stays put
    assert np.abs((np.sqrt(m)[:, None] * mode.vector).sum(axis=0)).max() < 1e-12
    c = mdhess.taylor(pot, R, mode.displacement, 3, box=L, species=sp)
    assert c[2] == pytest.approx(mode.kappa, rel=1e-10) and c[3] == pytest.approx(mode.tau, rel=1e-10)


def _icosahedron():
    g = (1 + 5**0.5) / 2
    v = np.array([[0, s1, s2 * g] for s1 in (-1, 1) for s2 in (-1, 1)], float)
    v = np.concatenate([v, np.roll(v, 1, axis=1), np.roll(v, 2, axis=1)])
    return np.concatenate([[[0.0, 0.0, 0.0]], v / np.linalg.norm(v[0])])


@pytest.mark.slow  # its own compiles for N = 13: ~7 s of CPU
def test_free_cluster_projects_rotations():
    pot = mdhess.lennard_jones(cutoff=3.0, switch=2.5, smoothness=4)
    R = 1.1 * _icosahedron()
    for _ in range(20):  # Newton to the LJ13 minimum (free space: translations, rotations by lstsq)
        F = np.asarray(mdhess.forces(pot, R)).ravel()
        R = R + np.linalg.lstsq(np.asarray(mdhess.hessian(pot, R)), F, rcond=1e-10)[0].reshape(-1, 3)
    assert np.abs(np.asarray(mdhess.forces(pot, R))).max() < 1e-11
    z0 = np.random.default_rng(2).normal(size=R.shape)
    mode = mdhess.nonlinear_mode(pot, R, z0=z0)
    assert mode.converged and _residual(pot, R, None, None, mode) <= 1.001e-8
    r = R - R.mean(axis=0)
    assert np.abs(mode.vector.sum(axis=0)).max() < 1e-12
    assert np.abs(np.cross(r, mode.vector).sum(axis=0)).max() < 1e-12  # no rigid rotation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "quintic"}, r"nonlinear_mode\(kind=...\) must be one of \('cubic', 'quartic'\); got 'quintic'"),
        ({"z0": np.ones((12, 3))}, r"nonlinear_mode\(z0=...\) expects shape \(13, 3\); got \(12, 3\)"),
        ({"z0": np.zeros((13, 3))}, r"nonlinear_mode\(z0=...\) is zero after projecting"),
        ({"z0": np.tile([1.0, 0.0, 0.0], (13, 1))}, r"nonlinear_mode\(z0=...\) is zero after projecting"),
        ({"z0": np.full((13, 3), np.nan)}, r"nonlinear_mode\(z0=...\) has non-finite coordinates at atom 0"),
        ({"masses": -1.0}, r"nonlinear_mode\(masses=...\) must be finite and > 0; got -1.0"),
        ({"masses": np.ones(5)}, r"nonlinear_mode\(masses=...\) needs one mass per atom, shape \(13,\); got shape \(5,\)"),
        ({"tol": 0.0}, r"nonlinear_mode\(tol=...\) must be a finite number > 0; got 0.0"),
        ({"maxiter": 2.5}, r"nonlinear_mode\(maxiter=...\) must be an integer >= 1; got 2.5"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(mdhess.InputError, match=match):
        mdhess.nonlinear_mode(mdhess.lennard_jones(), _icosahedron(), **kwargs)


def test_not_a_minimum_is_refused():
    # an LJ dimer stretched past the inflection point (r > 1.244): the bond's curvature is < 0
    R = np.array([[0.0, 0.0, 0.0], [1.4, 0.0, 0.0]])
    with pytest.raises(mdhess.InputError, match="not positive definite on the vibrational directions"):
        mdhess.nonlinear_mode(mdhess.lennard_jones(), R, z0=[[-1.0, 0, 0], [1.0, 0, 0]])


# -- the C4 switch ----------------------------------------------------------------------------------
@jax.jit
def _radial_jit(pot, r):
    pp = pot.pair_params(jnp.zeros(r.shape, int), jnp.zeros(r.shape, int))
    return radial_derivatives_to(pot.phi_eff, r, pp, 4)


def _radial(pot, r):
    """(5, len(r)) phi^(k)(r), k = 0..4, by Taylor-mode autodiff (one compile per potential)."""
    r = np.asarray(r, float)
    return np.asarray(_radial_jit(pot, jnp.asarray(np.resize(r, 3))))[:, : len(r)]


@pytest.mark.parametrize("edge", [2.0, 2.5], ids=["switch_on", "cutoff"])
def test_c4_switch_has_continuous_third_and_fourth_derivatives(edge):
    c4 = mdhess.lennard_jones(cutoff=2.5, switch=2.0, smoothness=4)
    c2 = mdhess.lennard_jones(cutoff=2.5, switch=2.0)
    jumps, fd_err = {}, {}
    for h in (1e-4, 1e-5):  # small enough that O(h) beats O(h^2 |phi^(5) jump|)
        for name, pot in (("c4", c4), ("c2", c2)):
            d = _radial(pot, np.array([edge - h, edge, edge + h]))
            jumps[name, h] = np.abs(d[:, 2] - d[:, 0])  # (order + 1,) changes across the edge
            # finite differences across the edge: (phi^(k-1)(e + h) - phi^(k-1)(e - h)) / 2h tends
            # to phi^(k)(e) when phi^(k) is continuous there (error O(h): the 5th derivative of
            # the C4 switch jumps), and to the mean of the one-sided limits when it jumps
            fd_err[name, h] = np.abs((d[:-1, 2] - d[:-1, 0]) / (2 * h) - d[1:, 1])  # k = 1..4
    # floors for rounding (at rc every derivative vanishes, so only rounding is left there):
    # 1e-10 of the derivatives' size near the edges, and 1e3 eps |phi^(k-1)| / h for the differences
    # (the switch polynomial's terms, ~500 in size, cancel near x = 1)
    scale = np.abs(_radial(c4, np.array([1.9, 2.1, 2.4]))).max(axis=1)
    for k in range(5):  # C4: every change across the edge shrinks like h (bounded 5th derivative)
        assert jumps["c4", 1e-5][k] <= 0.15 * jumps["c4", 1e-4][k] + 1e-10 * scale[k], k
    for k in range(4):  # ... and the finite differences converge to the derivatives at the edge
        assert fd_err["c4", 1e-5][k] <= 0.15 * fd_err["c4", 1e-4][k] + 1e-12 * scale[k] / 1e-5, k + 1
    # the C2 switch: the third derivative jumps by a finite amount that does not shrink, and the
    # finite difference of the second derivative does not converge to the third at the edge
    assert jumps["c2", 1e-5][3] > 0.5 * jumps["c2", 1e-4][3] > 0
    assert fd_err["c2", 1e-5][2] > 0.5 * fd_err["c2", 1e-4][2] > 0


def test_c4_switch_is_the_plain_potential_inside_the_onset():
    R = 0.95 * _icosahedron()  # every distance < 2.0 = switch onset
    assert np.linalg.norm(R[:, None] - R[None], axis=-1).max() < 2.0
    # the plain Lennard-Jones energy and forces in closed form (numpy, every pair once)
    d = R[None, :, :] - R[:, None, :]  # d[i, j] = r_j - r_i
    r = np.linalg.norm(d, axis=-1) + np.eye(len(R))
    off = ~np.eye(len(R), dtype=bool)
    e_ref = 0.5 * np.sum(np.where(off, 4 * (r**-12 - r**-6), 0.0))
    dphi = np.where(off, 4 * (-12 * r**-13 + 6 * r**-7), 0.0)  # phi'(r)
    f_ref = np.sum((dphi / r)[:, :, None] * d, axis=1)  # F_i = sum_j phi'(r_ij) (r_j - r_i) / r_ij
    pot = mdhess.lennard_jones(cutoff=2.5, switch=2.0, smoothness=4)
    assert mdhess.energy(pot, R) == pytest.approx(e_ref, rel=1e-13)
    np.testing.assert_allclose(mdhess.forces(pot, R), f_ref, rtol=1e-12, atol=1e-12 * np.abs(f_ref).max())
    # between onset and cutoff the two switches differ, and the C4 one goes to zero at rc
    c4 = mdhess.lennard_jones(cutoff=2.5, switch=2.0, smoothness=4)
    d = _radial(c4, np.array([2.1, 2.5 - 1e-9]))
    d2 = _radial(mdhess.lennard_jones(cutoff=2.5, switch=2.0), np.array([2.1]))  # (both 1/2 at 2.25)
    assert d[0, 0] != pytest.approx(d2[0, 0], rel=1e-3)
    assert np.abs(d[:4, 1]).max() < 1e-10 and abs(d[4, 1]) < 1e-4  # 1e-9 before rc: phi^(4) ~ 1e-9 |phi^(5)|
    assert c4.describe()["smoothness"] == 4 and "smoothness" not in mdhess.lennard_jones(cutoff=2.5).describe()


def test_smoothness_bad_input():
    with pytest.raises(mdhess.InputError, match=r"lennard_jones\(smoothness=...\) must be 2 \(C2 switch\) or 4"):
        mdhess.lennard_jones(cutoff=2.5, switch=2.0, smoothness=3)
    with pytest.raises(mdhess.InputError, match=r"lennard_jones\(smoothness=4\) shapes the switch and needs switch=r_on"):
        mdhess.lennard_jones(cutoff=2.5, smoothness=4)

"""Taylor coefficients along a direction and the third/fourth-order tensors (mdhess.taylor,
contract3, contract4, third_order) against nested automatic differentiation of the plain energy,
the closed-form Lennard-Jones dimer, finite differences of the Hessian, and their symmetries.

Tolerances: Taylor mode and nested jvp evaluate the same derivatives in a different order of
floating-point operations; over orders <= 6 they agree to ~1e-13 relative (1e-10 asserted). The
LJ dimer's closed form is exact arithmetic of the same powers: 1e-12 relative up to order 12.
Central differences of the Hessian with h = 1e-5 have error ~h^2 |Phi5| ~ 1e-8 relative here
(1e-6 asserted).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mdhess
from mdhess.pair._compute import plain_energy
from mdhess.pair._prepare import Prepared


def _cases():
    rng = np.random.default_rng(3)
    R_free = np.array([[0, 0, 0], [1.1, 0, 0], [0.2, 1.05, 0.1], [0.9, 0.8, 0.9], [0.1, 0.3, 1.2]], float)
    cell_tri = np.array([[3.2, 0, 0], [0.8, 3.0, 0], [0.4, 0.5, 3.1]])
    f = rng.uniform(0, 1, (10, 3))
    ka = mdhess.lennard_jones(sigma=[[1.0, 0.8], [0.8, 0.88]], epsilon=[[1.0, 1.5], [1.5, 0.5]],
                              cutoff=[[2.5, 2.0], [2.0, 2.2]], switch=[[2.0, 1.6], [1.6, 1.8]])  # fmt: skip
    user = mdhess.pair_potential(lambda r, a: a * jnp.exp(-r) / r**2, a=2.0, cutoff=2.4, switch=2.0)
    return {
        "free_lj": (mdhess.lennard_jones(), R_free, None, None),
        "orthorhombic_morse": (mdhess.morse(cutoff=2.0, switch=1.6), f * 3.0, 3.0, None),
        "triclinic_species": (ka, f @ cell_tri, cell_tri, (np.arange(10) % 2).astype(np.int32)),
        "small_cell": (mdhess.lennard_jones(cutoff=2.5, switch=2.0), f[:2] * 1.9, 1.9, None),
        "network": (mdhess.elastic_network(R_free, 1.6, k=3.0), R_free + 0.05, None, None),
        "user_kernel": (user, f * 3.0, 3.0, None),
    }


CASES = _cases()


def _nested(pot, R, box, species, Z, order):
    p = Prepared(pot, R, box, species, "t")
    args = p.arrays(jnp.float64, pad=False)
    Zd = jnp.asarray(Z)

    def E(t):
        return plain_energy(args[0], args[1] + t * Zd, *args[2:-1])

    fs = [E]
    for _ in range(order):
        fs.append(jax.grad(fs[-1]))
    return np.asarray(jax.jit(lambda t: jnp.stack([f(t) for f in fs]))(0.0))


# nested autodiff compiles a program exponential in the order (order 6: ~17 s a case here), so
# the default run checks order 4 on three geometries and the slow set order 6 on all of them
DEFAULT = {"free_lj", "triclinic_species", "network"}
TAYLOR_CASES = [pytest.param(c, 4, id=f"{c}-4") for c in sorted(DEFAULT)] + [
    pytest.param(c, 6, id=f"{c}-6", marks=pytest.mark.slow) for c in sorted(CASES)
]


@pytest.mark.parametrize("case, order", TAYLOR_CASES)
def test_taylor_matches_nested_autodiff(case, order):
    pot, R, box, s = CASES[case]
    Z = np.random.default_rng(5).normal(size=R.shape)
    ref = _nested(pot, R, box, s, Z, order)
    got = mdhess.taylor(pot, R, Z, order, box=box, species=s)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    H = np.asarray(mdhess.hessian(pot, R, box=box, species=s))
    assert got[2] == pytest.approx(Z.ravel() @ H @ Z.ravel(), rel=1e-10)


def _lj_derivative(r, k, sigma=1.0, eps=1.0):
    return 4 * eps * (-1) ** k * (
        math.factorial(11 + k) / math.factorial(11) * sigma**12 / r ** (12 + k)
        - math.factorial(5 + k) / math.factorial(5) * sigma**6 / r ** (6 + k)
    )


def test_lj_dimer_closed_form_to_order_12():
    r0 = 1.17
    n = np.array([0.6, 0.0, 0.8])
    R = np.array([[0.0, 0.0, 0.0], r0 * n])
    Z = np.array([[0.0, 0.0, 0.0], n])  # moves atom 1 along the bond: E(t) = phi(r0 + t)
    got = mdhess.taylor(mdhess.lennard_jones(), R, Z, 12)
    ref = np.array([_lj_derivative(r0, k) for k in range(13)])
    np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize(
    "case", ["triclinic_species", pytest.param("orthorhombic_morse", marks=pytest.mark.slow),
             pytest.param("network", marks=pytest.mark.slow)]
)  # fmt: skip
def test_contractions_match_autodiff_and_finite_differences(case):
    pot, R, box, s = CASES[case]
    rng = np.random.default_rng(7)
    U, V, W = rng.normal(size=(3,) + R.shape)
    p = Prepared(pot, R, box, s, "t")
    args = p.arrays(jnp.float64, pad=False)

    def E(X):
        return plain_energy(args[0], X, *args[2:-1])

    def d3(X):  # Phi3[., u, v] by nested autodiff of the plain energy
        return jax.grad(lambda Y: jax.jvp(lambda Q: jax.jvp(E, (Q,), (jnp.asarray(U),))[1], (Y,), (jnp.asarray(V),))[1])(X)

    def d4(X):
        return jax.jvp(d3, (X,), (jnp.asarray(W),))[1]

    R0 = jnp.asarray(R)
    c3 = np.asarray(mdhess.contract3(pot, R, U, V, box=box, species=s))
    c4 = np.asarray(mdhess.contract4(pot, R, U, V, W, box=box, species=s))
    scale3, scale4 = np.abs(c3).max(), np.abs(c4).max()
    np.testing.assert_allclose(c3, np.asarray(jax.jit(d3)(R0)), atol=1e-10 * scale3)
    np.testing.assert_allclose(c4, np.asarray(jax.jit(d4)(R0)), atol=1e-10 * scale4)
    # symmetric in the vectors; translations sum to zero (no net force change)
    np.testing.assert_allclose(np.asarray(mdhess.contract3(pot, R, V, U, box=box, species=s)), c3, atol=1e-12 * scale3)
    np.testing.assert_allclose(np.asarray(mdhess.contract4(pot, R, W, U, V, box=box, species=s)), c4, atol=1e-12 * scale4)
    np.testing.assert_allclose(c3.sum(axis=0), 0.0, atol=1e-11 * scale3)
    # central differences of the Hessian along u, applied to v
    h = 1e-5
    Hp = np.asarray(mdhess.hessian(pot, R + h * U, box=box, species=s))
    Hm = np.asarray(mdhess.hessian(pot, R - h * U, box=box, species=s))
    fd = ((Hp - Hm) / (2 * h)) @ V.ravel()
    np.testing.assert_allclose(c3.ravel(), fd, atol=1e-6 * scale3)


def test_third_order_pairs_and_dense_equal_the_contraction():
    pot, R, box, s = CASES["triclinic_species"]
    rng = np.random.default_rng(11)
    U, V = rng.normal(size=(2,) + R.shape)
    T = mdhess.third_order(pot, R, box=box, species=s, format="dense")
    assert T.shape == (3 * len(R),) * 3
    np.testing.assert_allclose(T, T.transpose(1, 0, 2), atol=1e-12 * np.abs(T).max())
    np.testing.assert_allclose(T, T.transpose(0, 2, 1), atol=1e-12 * np.abs(T).max())
    c3 = np.asarray(mdhess.contract3(pot, R, U, V, box=box, species=s)).ravel()
    np.testing.assert_allclose(np.einsum("abc,b,c->a", T, U.ravel(), V.ravel()), c3, atol=1e-10 * np.abs(c3).max())
    pairs = mdhess.third_order(pot, R, box=box, species=s)
    assert pairs.T.shape == (len(pairs.i), 3, 3, 3)
    np.testing.assert_array_equal(pairs.to_dense(), T)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"direction": np.zeros((5, 3))}, r"taylor\(direction=...\) is zero"),
        ({"direction": np.full((5, 3), np.nan)}, r"taylor\(direction=...\) has non-finite"),
        ({"direction": np.ones((4, 3))}, r"taylor\(direction=...\) expects shape \(5, 3\)"),
        ({"order": -1}, r"taylor\(order=...\) must be in 0..64; got -1"),
        ({"order": 1.5}, r"taylor\(order=...\) must be an integer >= 0; got 1.5"),
        ({"order": True}, r"taylor\(order=...\) must be an integer >= 0; got True"),
    ],
)
def test_bad_input(kwargs, match):
    pot, R, box, s = CASES["free_lj"]
    args = {"direction": np.ones((5, 3)), "order": 3, **kwargs}
    with pytest.raises(mdhess.InputError, match=match):
        mdhess.taylor(pot, R, args["direction"], args["order"])


def test_bad_contraction_and_format():
    pot, R, _, _ = CASES["free_lj"]
    with pytest.raises(mdhess.InputError, match=r"contract3\(v=...\) expects shape"):
        mdhess.contract3(pot, R, np.ones((5, 3)), np.ones(3))
    with pytest.raises(mdhess.InputError, match=r"third_order\(format=...\) must be one of"):
        mdhess.third_order(pot, R, format="csr")
    with pytest.raises(mdhess.MemoryPlanError, match="third_order"):
        mdhess.third_order(pot, R, format="dense", memory_limit="1K")

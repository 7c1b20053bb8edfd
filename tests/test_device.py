"""mdhess's jit wrapper (``_device.jit``): CPU compile options, nested use, fallback.

Every mdhess kernel is compiled through it, so the whole suite exercises the normal path; these
tests pin the three cases the wrapper exists to handle, each against plain ``jax.jit``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mdhess
from mdhess import _device


def kernel(x, y):
    return jnp.sin(x) * y[:, None] + jnp.sqrt(jnp.abs(x))


@pytest.fixture
def fresh_state(monkeypatch):
    """The wrapper's process-wide record of whether this XLA accepts the options, reset."""
    monkeypatch.setitem(_device._cpu_options_state, "usable", None)
    return _device._cpu_options_state


def _args():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray(rng.normal(size=5))


def test_same_result_as_plain_jit(fresh_state):
    x, y = _args()
    f = _device.jit(kernel)
    # elementwise sin/sqrt/mul/add: the same IEEE operations whatever the code generator
    np.testing.assert_array_equal(np.asarray(f(x, y)), np.asarray(jax.jit(kernel)(x, y)))
    if jax.default_backend() == "cpu":
        # the wrapper's record agrees with whether this XLA takes the options (JAX 0.10 does;
        # JAX 0.11's XLA has no such option: "No such compile option", and the plain jit runs)
        assert fresh_state["usable"] is _xla_takes_cpu_options()


def _xla_takes_cpu_options() -> bool:
    try:
        jax.jit(kernel, compiler_options=_device.CPU_COMPILER_OPTIONS)(*_args()).block_until_ready()
    except Exception as exc:  # noqa: BLE001 - which error a JAX raises for an unknown option varies
        assert "compile option" in str(exc) or "xla_cpu" in str(exc), exc
        return False
    return True


def test_nested_in_callers_trace(fresh_state):
    """JAX refuses compiler options on a nested jit: inside jit/grad/vmap (tracer arguments) and
    when a caller's jit closes over concrete arrays, the wrapper must fall back to the plain jit."""
    x, y = _args()
    f = _device.jit(kernel)
    want = np.asarray(kernel(x, y))
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x, y)), want, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda z: f(x, z))(y)), want, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda z: f(x, y) + 0 * z.sum())(y)), want, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(jax.vmap(f, in_axes=(None, 0))(x, y[None]))[0], want, rtol=1e-15)
    g = jax.grad(lambda a: f(a, y).sum())(x)
    dg = jnp.cos(x) * y[:, None] + jnp.sign(x) / (2 * jnp.sqrt(jnp.abs(x)))
    np.testing.assert_allclose(np.asarray(g), np.asarray(dg), rtol=1e-13)


def test_unknown_option_falls_back(fresh_state, monkeypatch):
    """An XLA that does not know an option (a later JAX) gets the plain jit, with the same result."""
    if jax.default_backend() != "cpu":
        pytest.skip("the options apply to the CPU backend only")
    monkeypatch.setattr(_device, "CPU_COMPILER_OPTIONS", {"xla_no_such_option_mdhess_test": True})
    x, y = _args()
    f = _device.jit(kernel)
    # ahead-of-time use before any call has tried the options: the plain jit's lowering
    want = np.asarray(jax.jit(kernel)(x, y))
    np.testing.assert_array_equal(np.asarray(f.lower(x, y).compile()(x, y)), want)
    np.testing.assert_array_equal(np.asarray(f(x, y)), want)
    assert fresh_state["usable"] is False
    np.testing.assert_array_equal(np.asarray(f(x, y)), np.asarray(jax.jit(kernel)(x, y)))


def test_library_kernel_with_and_without_options(fresh_state, monkeypatch):
    """A Hessian compiled with the CPU options equals the one compiled without them to a few ulps
    (the two code generators may order the same operations differently: measured 2.4e-7 on
    entries of 4e9, i.e. 6e-17 relative) and stays exactly symmetric."""
    R = np.random.default_rng(1).uniform(0, 4, size=(30, 3))
    pot = mdhess.lennard_jones(sigma=1.0, epsilon=1.0, cutoff=2.5)
    H1 = np.asarray(mdhess.hessian(pot, R, box=4.0 * np.ones(3) + 1.5))
    monkeypatch.setitem(_device._cpu_options_state, "usable", False)  # plain jit from here on
    H2 = np.asarray(mdhess.hessian(pot, R, box=4.0 * np.ones(3) + 1.5))
    assert np.abs(H1 - H2).max() <= 1e-15 * np.abs(H1).max()
    np.testing.assert_array_equal(H2, H2.T)

"""Getting work onto the device cheaply: host -> device transfer that never compiles, and
``jit``, the ``jax.jit`` every mdhess kernel uses (CPU compile options; see below).

``jnp.asarray(numpy_array)`` and ``jnp.asarray(x, other_dtype)`` run a small jitted program
(``stage`` / ``convert_element_type``) that XLA compiles once per shape and dtype: about 10 ms
each on a CPU, so a first call that moves seven arrays paid ~0.1 s of compile before the real
kernel. ``jax.device_put`` of a numpy array of the right dtype only copies.
"""

import functools

import jax
import numpy as np


def to_device(x, dtype=None):
    """``x`` as a device array (``dtype`` applied on the host for host inputs)."""
    if isinstance(x, jax.Array):
        return x if dtype is None or x.dtype == np.dtype(dtype) else x.astype(dtype)
    return jax.device_put(np.asarray(x, dtype=dtype))


def is_floating(x) -> bool:
    dt = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    return np.issubdtype(dt, np.floating)


# -- jit with CPU compile options -----------------------------------------------------------------
# Without XLA's CPU "fusion emitters" (the MLIR code generator for fusions) a per-pair kernel
# compiles in about 60% of the time with the same run time (measured: docs/benchmarks.md, "Core
# engine", first calls). GPU and TPU compiles are left as they are.
CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
_cpu_options_state = {"usable": None}  # None: not yet known; False: this XLA rejects them
try:
    from jax.core import Tracer as _Tracer
except ImportError:  # pragma: no cover - a JAX that moved it
    from jax._src.core import Tracer as _Tracer


def _cpu_options():
    if _cpu_options_state["usable"] is False or jax.default_backend() != "cpu":
        return None
    return CPU_COMPILER_OPTIONS


class _Jit:
    """``jax.jit(fun, **kw)`` that compiles with ``CPU_COMPILER_OPTIONS`` on the CPU backend.

    The backend is looked up at the first call (not at import: that would start JAX's backend).
    An XLA that does not know an option (a later JAX) gets the plain jit from then on.
    """

    def __init__(self, fun, kwargs):
        self._fun, self._kwargs = fun, kwargs
        self._plain = jax.jit(fun, **kwargs)
        self._tuned = None
        functools.update_wrapper(self, fun)

    def _pick(self):
        opts = _cpu_options()
        if opts is None:
            return self._plain
        if self._tuned is None:
            self._tuned = jax.jit(self._fun, compiler_options=opts, **self._kwargs)
        return self._tuned

    def __call__(self, *args, **kwargs):
        f = self._pick()
        if f is self._plain:
            return f(*args, **kwargs)
        # inside a trace (the caller's jit, grad, vmap) this is a nested jit, which JAX refuses
        # compiler options: the outer compile decides
        if any(isinstance(x, _Tracer) for x in jax.tree.leaves((args, kwargs))):
            return self._plain(*args, **kwargs)
        try:
            out = f(*args, **kwargs)
        except ValueError:
            # nested after all (a caller's trace closes over concrete arrays; JAX 0.10 says
            # "compiler_options can only be passed to top-level jax.jit"). Not matched on the
            # message, which may change: the plain jit runs, and re-raises any genuine error
            return self._plain(*args, **kwargs)
        except Exception as exc:  # first compile in this process: an XLA without the option
            msg = str(exc)
            about_option = "compile option" in msg or any(k in msg for k in CPU_COMPILER_OPTIONS)
            if _cpu_options_state["usable"] or not about_option:
                raise
            _cpu_options_state["usable"] = False
            return self._plain(*args, **kwargs)
        _cpu_options_state["usable"] = True
        return out

    def lower(self, *args, **kwargs):  # AOT use: the options only once a call has shown they work
        f = self._pick() if _cpu_options_state["usable"] else self._plain
        return f.lower(*args, **kwargs)

    def __getattr__(self, name):  # _cache_size, eval_shape, trace, ...
        return getattr(self._pick(), name)

    def __get__(self, obj, objtype=None):  # as a method: bind like a function
        return self if obj is None else functools.partial(self, obj)


def jit(fun=None, **kwargs):
    """Drop-in for ``jax.jit`` (decorator with or without keywords) used by every mdhess kernel."""
    if fun is None:
        return lambda f: _Jit(f, kwargs)
    return _Jit(fun, kwargs)

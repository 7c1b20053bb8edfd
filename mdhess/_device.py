"""Host -> device transfer that never compiles.

``jnp.asarray(numpy_array)`` and ``jnp.asarray(x, other_dtype)`` run a small jitted program
(``stage`` / ``convert_element_type``) that XLA compiles once per shape and dtype: about 10 ms
each on a CPU, so a first call that moves seven arrays paid ~0.1 s of compile before the real
kernel. ``jax.device_put`` of a numpy array of the right dtype only copies.
"""

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

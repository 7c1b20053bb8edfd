"""Memory planner: estimate what a request needs before allocating it, refuse what cannot fit.

Estimates come from XLA itself where a compiled function is involved (``compiled.memory_analysis()``
reports argument, output and temporary bytes without running anything) and from exact sizes of
the host-side arrays otherwise. The limit defaults to what the device has free: the accelerator's
``memory_stats()`` (bytes_limit - bytes_in_use) on a GPU, MemAvailable from /proc/meminfo on a
CPU. Override it per call (``memory_limit=`` in bytes) or for the process with the environment
variable ``MDHESS_MEMORY_LIMIT`` (bytes, or with a suffix: 500M, 8G).
"""

import os
from dataclasses import dataclass, field

import jax

from .._errors import InputError, MemoryPlanError

_SUFFIX = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _parse_bytes(value, what: str) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        b = int(value)
    else:
        s = str(value).strip().upper().removesuffix("B").removesuffix("I")
        try:
            b = int(float(s[:-1]) * _SUFFIX[s[-1]]) if s and s[-1] in _SUFFIX else int(float(s))
        except (ValueError, KeyError) as exc:
            raise InputError(f"{what} must be a number of bytes (e.g. 8000000000 or '8G'); got {value!r}") from exc
    if b <= 0:
        raise InputError(f"{what} must be > 0 bytes; got {value!r}")
    return b


def available_memory(device=None) -> int:
    """Bytes free on ``device`` (default: JAX's first device)."""
    device = device or jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without stats raise or return None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def memory_limit(override=None) -> int:
    """The limit in force: ``override``, else $MDHESS_MEMORY_LIMIT, else the free device memory."""
    if override is not None:
        return _parse_bytes(override, "memory_limit")
    env = os.environ.get("MDHESS_MEMORY_LIMIT")
    if env:
        return _parse_bytes(env, "MDHESS_MEMORY_LIMIT")
    return available_memory()


@dataclass(frozen=True)
class MemoryPlan:
    """An estimate of the peak bytes a request needs, with its parts."""

    request: str
    total_bytes: int
    parts: dict = field(default_factory=dict)

    def __str__(self):
        parts = ", ".join(f"{k} {_fmt(v)}" for k, v in self.parts.items())
        return f"{self.request}: about {_fmt(self.total_bytes)} ({parts})"


def _fmt(b: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:.2f} {unit}"
    return f"{int(b)} B"


def from_compiled(request: str, compiled) -> MemoryPlan:
    """Plan from XLA's own accounting of a compiled function (nothing is run)."""
    ma = compiled.memory_analysis()
    if ma is None:
        return MemoryPlan(request, 0, {"unknown": 0})
    parts = {
        "arguments": int(ma.argument_size_in_bytes),
        "output": int(ma.output_size_in_bytes),
        "temporaries": int(ma.temp_size_in_bytes),
    }
    return MemoryPlan(request, sum(parts.values()), parts)


def estimate_memory(
    n_atoms: int, n_pairs: int, *, format="dense", method="pair", dtype="float64", all_pairs: bool = False
) -> MemoryPlan:
    """Estimated peak bytes of ``mdhess.hessian`` for a system of this size (pair method).

    ``all_pairs``: free space without a cutoff, where the dense layout is written from two (N, N)
    per-pair tables instead of a pair list. For method="ad" the estimate needs the compiled
    function; ``mdhess.hessian`` asks XLA for it.
    """
    import numpy as np

    b = np.dtype(dtype).itemsize
    n3 = 3 * n_atoms
    blocks = 9 * n_pairs * b
    pair_arrays = n_pairs * (2 * 4 + 3 * b + 1)
    if method != "pair":
        raise InputError("estimate_memory(method=...) covers method='pair'; method='ad' is planned from XLA")
    if format == "dense" and all_pairs:
        from ._layouts import row_block_size

        # scratch: a row block's (B, N) arrays (distances, derivatives, tables) live at once
        scratch = 12 * row_block_size(n_atoms) * n_atoms * b
        parts = {"output": n3 * n3 * b, "pair tables": 2 * n_atoms * n_atoms * b}
        parts["row-block scratch"] = scratch
    elif format == "dense":
        parts = {"output": n3 * n3 * b, "pair blocks": 2 * blocks, "pair list": pair_arrays}
    elif format == "bsr":
        # device blocks, host copy, the (2p + N) block list, its sort and the summed result
        parts = {"pair blocks": 2 * blocks, "block list": 3 * (2 * blocks + 9 * n_atoms * b), "pair list": 2 * pair_arrays}
    else:
        raise InputError(f"estimate_memory(format=...) must be 'dense' or 'bsr'; got {format!r}")
    return MemoryPlan(f"hessian(format={format!r}, method={method!r}, N={n_atoms}, pairs={n_pairs})", sum(parts.values()), parts)


def check(plan: MemoryPlan, limit=None, *, suggestion: str = "") -> None:
    """Raise MemoryPlanError when the plan exceeds the limit (see ``memory_limit``)."""
    lim = memory_limit(limit)
    if plan.total_bytes > lim:
        raise MemoryPlanError(
            f"{plan} exceeds the memory limit of {_fmt(lim)}; refused before allocating. {suggestion}".rstrip()
        )

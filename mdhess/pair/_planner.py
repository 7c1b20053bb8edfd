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
import numpy as np

from .._errors import InputError, MemoryPlanError
from ._geometry import image_counts

_SUFFIX = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _parse_bytes(value, what: str) -> int:
    """Bytes from a number or a string such as '8G'; ``what`` names the argument in errors."""
    bad = f"{what} must be a positive number of bytes (e.g. 8000000000 or '8G'); got {value!r}"
    if isinstance(value, bool) or value is None:
        raise InputError(bad)
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
    else:
        if not isinstance(value, str):
            raise InputError(bad)
        s = value.strip().upper().removesuffix("B").removesuffix("I")
        try:
            v = float(s[:-1]) * _SUFFIX[s[-1]] if s and s[-1] in _SUFFIX else float(s)
        except (ValueError, KeyError) as exc:
            raise InputError(bad) from exc
    if not np.isfinite(v) or v < 1:
        raise InputError(bad)
    return int(v)


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
        return _parse_bytes(override, "memory_limit=...")
    env = os.environ.get("MDHESS_MEMORY_LIMIT")
    if env:
        return _parse_bytes(env, "the environment variable MDHESS_MEMORY_LIMIT")
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
            return f"{b / size:.2f} {unit}" if b / size < 1e4 else f"{b / size:.3g} {unit}"
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


PAIR_LIST_BYTES = 160
"""Peak host bytes per listed pair while a periodic list is built, filtered and padded (indices,
integer and Cartesian shifts, distances, the filtered and padded copies)."""


def check_pair_list_memory(n_atoms: int, cell: np.ndarray, cutoff: float, *, call: str, limit=None) -> None:
    """Refuse (MemoryPlanError) a periodic pair list whose estimated size alone exceeds the memory
    limit, before anything is built: about N^2/2 x (4/3) pi rc^3 / V atom-image pairs (uniform
    density; the self-image pairs N/2 x the same ratio included)."""
    _, _, _, inside = image_counts(cell, cutoff)
    est = 0.5 * n_atoms * n_atoms * inside
    nbytes = est * PAIR_LIST_BYTES
    if not np.isfinite(nbytes):
        nbytes = float("inf")
    plan = MemoryPlan(
        f"{call}: the periodic pair list of N={n_atoms} atoms within cutoff {cutoff:g} "
        f"(cell volume {abs(float(np.linalg.det(cell))):.4g}) would hold about {est:.3g} atom-image pairs",
        nbytes if nbytes == float("inf") else int(nbytes),
        {"pair list": nbytes},
    )
    check(plan, limit, suggestion="Use a smaller cutoff or a larger cell.")

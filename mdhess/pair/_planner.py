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
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.parts.items())
        return f"{self.request}: about {format_bytes(self.total_bytes)} ({parts})"


def format_bytes(b: float) -> str:
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
        parts = bsr_parts(n_atoms, n_pairs, b)
    else:
        raise InputError(f"estimate_memory(format=...) must be 'dense' or 'bsr'; got {format!r}")
    return MemoryPlan(f"hessian(format={format!r}, method={method!r}, N={n_atoms}, pairs={n_pairs})", sum(parts.values()), parts)


def check(plan: MemoryPlan, limit=None, *, suggestion: str = "") -> None:
    """Raise MemoryPlanError when the plan exceeds the limit (see ``memory_limit``)."""
    lim = memory_limit(limit)
    if plan.total_bytes > lim:
        raise MemoryPlanError(
            f"{plan} exceeds the memory limit of {format_bytes(lim)}; refused before allocating. {suggestion}".rstrip()
        )


# -- the streamed BSR (pair/_assembly, pair/_layouts.BsrAssembly); docs/scaling.md, "Memory model"
BSR_CHUNK_SLOT_BYTES = 420
"""Host bytes per pair slot of one chunk of the streamed BSR: two chunks in flight of kernel
arguments (33), blocks (72) and XLA temporaries (81-105, ``compiled.memory_analysis()`` of the
block kernel for Lennard-Jones and Kob-Andersen), plus the host's padded arrays and -K."""
BSR_CHUNK_PAIRS = 1 << 16
"""Pairs per chunk on a CPU (``_assembly.chunk_pairs``)."""
BSR_FIXED_BYTES = 64 * 2**20
"""Once per call, whatever the size: compiling the chunk kernels (~30 MB of resident memory on a
CPU) and what the allocator keeps of the pair list's temporaries (measured: docs/scaling.md)."""


def bsr_parts(n_atoms: int, n_pairs: int, itemsize: int) -> dict:
    """Peak bytes of the streamed BSR by part: the larger of its two phases.

    pattern: the pair list (i, j int32, (p, 3) float64 shifts: 32 bytes a pair), the (2p + N)
    integer keys, their sort permutation (int64) and sorted copy, the entry places.
    fill: the pair list, the entry places, the output (data 9 x itemsize and an int32 index per
    block, nnzb <= 2p + N; indptr), one chunk in flight, the diagonal sums (device and host),
    and a fixed part (``BSR_FIXED_BYTES``).
    """
    n, p = int(n_atoms), int(n_pairs)
    m = 2 * p + n  # entries; blocks <= m (fewer only where images of a pair share a block)
    kt = 4 if n * n < 2**31 else 8
    et = 4 if m < 2**31 else 8
    it = 4 if m < 2**31 and 3 * n < 2**31 else 8  # scipy's index dtype for indices and indptr
    pair_list = 32 * p + (24 * p if itemsize == 4 else 0)  # float32 in a cell: wrapped shifts
    pattern = pair_list + m * max(2 * kt + 8, kt + 8 + 2 * et)
    fill = {
        "output": m * (9 * itemsize + it) + it * (n + 1),
        "pair list": pair_list,
        "entry places": m * et,
        "chunk": BSR_CHUNK_SLOT_BYTES * min(max(p, 1), BSR_CHUNK_PAIRS),
        "diagonal sums": 5 * 9 * itemsize * n,
        "kernels and allocator": BSR_FIXED_BYTES,
    }
    if pattern + BSR_FIXED_BYTES > sum(fill.values()):
        return {"pair list": pair_list, "pattern sort": pattern - pair_list, "kernels and allocator": BSR_FIXED_BYTES}
    return fill


SHARDED_TEMP_SLOT_BYTES = 110
"""XLA temporaries per entry slot of a device's block program (the blocks of all its slots are
computed in one call: ~81-105 bytes a slot measured for the BSR kernel, ``BSR_CHUNK_SLOT_BYTES``)."""


def cross_fraction(n_atoms: int, n_pairs: int, n_devices: int) -> float:
    """Estimated share of the pairs whose two atoms belong to different devices' rows: for pairs
    uniform in a ball of radius rc, the chance of crossing a face of a cube of side l is
    3 x (3/8) rc / l; with rho rc^3 from the pair count (p = N rho 4/3 pi rc^3 / 2) and
    l^3 = N / (D rho), rc / l = (3 p D / (2 pi N^2))^(1/3). The spatial order's regions are
    slabs and rods for 2 and 4 devices, which cross less: measured 0.20 against 0.23 estimated
    (fcc LJ, N = 6912, rc = 2.5, 4 devices). At most 1; 0 for one device."""
    n, p, D = max(int(n_atoms), 1), max(int(n_pairs), 0), max(int(n_devices), 1)
    if D == 1 or p == 0:
        return 0.0
    return min(1.0, 9.0 / 8.0 * (3.0 * p * D / (2.0 * np.pi * float(n) ** 2)) ** (1.0 / 3.0))


def sharded_parts(n_atoms: int, n_pairs: int, *, n_devices: int, local_devices: int, itemsize: int,
                  store_blocks: bool, host_devices: bool) -> dict:  # fmt: skip
    """Peak bytes of one process of a sharded operator (``_sharded.ShardedHessianOperator``) by part.

    Host: the pair list (32 bytes a pair), the row partition (new-order endpoints, shifts, owners:
    56), the halo plan (the pairs whose rows have different owners, as (device, column) keys made
    unique: at most 64 a pair, transient), and its devices' entries while they are built and handed over (p (1 + f) L / D entries of 46
    bytes, twice: the cached copy and the concatenated one). Each device: its entry slots (``cap``
    = the padded share of the p (1 + f) entries, 19% bucket padding plus 10% for an uneven
    split: a pair is one entry, two where its atoms have different owners, a fraction f,
    ``cross_fraction``) of row (two int32), col,
    lcol, pidx (int32), shift (3 floats), fwd and mask, its halo send list (at most N
    int32), its stored blocks (9 floats a slot),
    the block program's XLA temporaries, and the replicated geometry and products (a few vectors
    of 3N). Measured against it: tests/test_sharded.py (peak RSS of a 4-device build within the
    plan). ``host_devices``: the
    devices live in host memory (CPU devices), so their parts add to the host's, times the
    process's ``local_devices``; otherwise the largest device's own share is given.
    """
    from ._pairs import bucket

    n, p, D, L, b = int(n_atoms), int(n_pairs), max(1, int(n_devices)), max(1, int(local_devices)), int(itemsize)
    share = p * (1 + cross_fraction(n, p, D)) / D
    cap = bucket(int(share * 1.1) + 1)
    per_device = {
        "entries": cap * (8 + 4 + 4 + 4 + 3 * b + 1 + 1) + 4 * n,
        "blocks": cap * 9 * b if store_blocks else 0,
        "kernel temporaries": cap * SHARDED_TEMP_SLOT_BYTES,
        "geometry and products": (-(-n // D) * D) * (3 * b + 4) + 8 * n + 4 * 3 * n * b,
    }
    host = {
        "pair list": 32 * p,
        "row partition": 56 * p,
        "entries being built": int(2 * share * min(L, D) * 46),
        "halo plan": 64 * p if D > 1 else 0,
        "kernels and allocator": BSR_FIXED_BYTES,
    }
    if host_devices:
        return {**host, **{f"{k} ({L} devices)": v * L for k, v in per_device.items()}}
    return {f"{k} (per device)": v for k, v in per_device.items()}


def estimate_sharded_memory(n_atoms: int, n_pairs: int, *, n_devices: int, local_devices: int, dtype="float64",
                            store_blocks: bool = True, host_devices: bool = True, call: str = "hvp") -> MemoryPlan:  # fmt: skip
    """Estimated peak bytes of ``hvp(..., devices=...)`` / ``hessian(..., format="bsr",
    devices=...)`` in one process (``sharded_parts``)."""
    parts = sharded_parts(
        n_atoms, n_pairs, n_devices=n_devices, local_devices=local_devices, itemsize=np.dtype(dtype).itemsize,
        store_blocks=store_blocks, host_devices=host_devices,
    )  # fmt: skip
    where = f"{local_devices} of {n_devices} devices in this process" if host_devices else f"each of {n_devices} devices"
    return MemoryPlan(f"{call}(devices=..., N={n_atoms}, pairs={n_pairs}; {where})", sum(parts.values()), parts)


PAIR_LIST_BYTES = 160
"""Peak host bytes per listed pair while a periodic list is built, filtered and padded (indices,
integer and Cartesian shifts, distances, the filtered and padded copies)."""


def _volume(n_atoms: int, cell, positions):
    """(volume, what): the cell's volume, or in free space that of the positions' bounding box
    (None where it is flat: no density to estimate from)."""
    if cell is not None:
        return abs(float(np.linalg.det(cell))), "cell volume"
    if positions is None or n_atoms < 2:
        return None, ""
    v = float(np.prod(np.ptp(positions, axis=0)))
    return (v, "bounding-box volume") if v > 0 and np.isfinite(v) else (None, "")


def estimated_pairs(n_atoms: int, volume: float, cutoff: float, *, species=None, pair_cutoffs=None) -> float:
    """Pairs within the cutoff at uniform density: 1/2 sum over species pairs (a, b) of
    N_a N_b (4/3) pi rc_ab^3 / V (self-images included), ``pair_cutoffs(si, sj)`` giving rc_ab
    (else ``cutoff`` for every pair)."""
    if species is not None and pair_cutoffs is not None and len(species):
        counts = np.bincount(np.asarray(species))
        s = np.flatnonzero(counts)
        rc = np.asarray(pair_cutoffs(s[:, None], s[None, :]), dtype=np.float64)
        rc3 = float(np.sum(np.outer(counts[s], counts[s]) * rc**3))
    else:
        rc3 = float(n_atoms) ** 2 * float(cutoff) ** 3
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return 0.5 * 4.0 / 3.0 * np.pi * rc3 / volume


def check_pair_list_memory(
    n_atoms: int, cell, cutoff: float, *, call: str, limit=None, plan=None, positions=None, species=None, pair_cutoffs=None
) -> None:
    """Refuse (MemoryPlanError), before anything is built, a pair list whose estimated size
    exceeds the memory limit, and with ``plan`` ((n_atoms, n_pairs) -> MemoryPlan of the whole
    request) a request that will not fit once the list is built.

    The count is estimated from the density and the cutoff (``estimated_pairs``): about
    N^2/2 x (4/3) pi rc^3 / V atom-image pairs, V the cell's volume, or in free space the
    positions' bounding box (at most N (N - 1) / 2; no estimate where the box is flat: the exact
    check after the list still applies). The list itself is built at the largest cutoff; the
    request's pairs are counted with the per-species-pair cutoffs."""
    V, what = _volume(n_atoms, cell, positions)
    if V is None:
        return
    most = float("inf") if cell is not None else n_atoms * (n_atoms - 1) / 2
    est = min(estimated_pairs(n_atoms, V, cutoff), most)
    nbytes = est * PAIR_LIST_BYTES
    if not np.isfinite(nbytes):
        nbytes = float("inf")
    kind = "periodic pair list" if cell is not None else "pair list"
    lst = MemoryPlan(
        f"{call}: the {kind} of N={n_atoms} atoms within cutoff {cutoff:g} "
        f"({what} {V:.4g}) would hold about {est:.3g} atom-image pairs",
        nbytes if nbytes == float("inf") else int(nbytes),
        {"pair list": nbytes},
    )
    check(lst, limit, suggestion="Use a smaller cutoff or a larger cell.")
    if plan is None:
        return
    p_req = min(estimated_pairs(n_atoms, V, cutoff, species=species, pair_cutoffs=pair_cutoffs), most)
    whole = plan(n_atoms, int(min(p_req, 2.0**62)))
    whole = MemoryPlan(
        f"{whole.request}, the pair count estimated from the density ({what} {V:.4g}) and the "
        "cutoff before any list was built",
        whole.total_bytes,
        whole.parts,
    )
    other = "" if "format='bsr'" in whole.request else "format='bsr', "
    check(whole, limit, suggestion=f"Try {other}mdhess.hvp(...), a smaller system, or a larger memory_limit.")

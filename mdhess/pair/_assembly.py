"""The lean BSR Hessian: pair blocks computed chunk by chunk and streamed into the output.

``bsr_hessian`` sorts the pattern's integers first (``_layouts.bsr_pattern``), then runs the one
jitted block kernel (``_compute.blocks_and_check``) over fixed-size chunks of the pair list and
hands each chunk to ``_layouts.BsrAssembly``, which writes the blocks straight into the
preallocated data array. Never alive: the whole list's blocks beside the output, a second copy
of the pair list on the device, or an unsorted block list. Peak: the output plus a few integers per
pair plus one chunk (docs/scaling.md, "Memory model"; figures in docs/benchmarks.md).
"""

import jax

from .._device import to_device
from ._compute import blocks_and_check
from ._layouts import BsrAssembly
from ._pairs import PairList, bucket, padded
from ._prepare import Prepared, cast_potential, raise_nonfinite


def chunk_pairs() -> int:
    """Pairs per kernel call: 2^16 on a CPU (about 14 MB of kernel arguments, blocks and XLA
    temporaries, ~210 bytes a pair; 2^18 kept about 80 MB more at N = 32,000); 2^20 on an
    accelerator, where each call is a launch. A power of two, so a list at most this long uses
    the same bucketed size (and compiled kernel) as the other pair calls."""
    return 1 << 16 if jax.default_backend() == "cpu" else 1 << 20


TRIM_MIN_PAIRS = 1 << 20
"""``bsr_hessian`` trims the C heap (``release_freed_memory``) only for lists of at least this
many pairs. Below it what the heap keeps is a few tens of MB at most, and a trim costs more than
it saves: ~2 ms each, and the pages it hands back are faulted in again by the next arrays
(measured: 64 -> 44 ms a frame of 2000 atoms, 64,000 pairs, peak RSS unchanged at 4,000 and
13,500 atoms: docs/benchmarks.md, "Per-frame BSR Hessian of small frames")."""


def release_freed_memory(n_pairs: int | None = None) -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``; elsewhere nothing).

    Arrays between ~128 kB and 32 MB (the pair list's temporaries below about 4 M pairs) come
    from the heap once glibc has raised its mmap threshold, and free heap below a live array is
    not returned by itself: measured, 50 MB kept after the list of a 50,000-atom glass, on top of
    which the output would be allocated. That matters only for large lists: given ``n_pairs``
    below ``TRIM_MIN_PAIRS`` (~1 M pairs) nothing is done (what the heap keeps is small, and a
    trim costs more than it saves, its pages faulted in again at once)."""
    if n_pairs is not None and n_pairs < TRIM_MIN_PAIRS:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _chunk(pairs: PairList, lo: int, hi: int) -> PairList:
    return PairList(pairs.i[lo:hi], pairs.j[lo:hi], None if pairs.shift is None else pairs.shift[lo:hi], pairs.n_atoms)


def bsr_hessian(p: Prepared, dtype, *, call: str = "hessian"):
    """Canonical scipy BSR Hessian (blocksize (3, 3)) of a prepared call, streamed.

    Raises:
        NonFiniteError: a chunk's blocks came out NaN or infinite (raised at that chunk).
    """
    R, pairs = p.wrapped(dtype)
    n, n_p = p.n_atoms, pairs.n_pairs
    release_freed_memory(n_p)  # what the list build freed, before the pattern and the output
    cap = min(bucket(n_p), chunk_pairs())
    if n_p:
        pot, Rd, s = cast_potential(p.potential, dtype), to_device(R, dtype), to_device(p.species)

        def launch(lo):
            hi = min(lo + cap, n_p)
            i, j, shift, mask = padded(_chunk(pairs, lo, hi), cap)
            i, j = to_device(i), to_device(j)
            K, ok = blocks_and_check(pot, Rd, s, i, j, to_device(shift, dtype), to_device(mask))
            return hi, K, ok, i, j

    # a list of one chunk: its kernel runs (asynchronously) while the host sorts the pattern; a
    # longer one starts its first chunk only after the sort, whose temporaries are freed by then
    nxt = launch(0) if 0 < n_p <= cap else None
    asm = BsrAssembly(pairs.i, pairs.j, n, dtype)
    release_freed_memory(n_p)  # the pattern sort's temporaries
    if n_p:
        if nxt is None:
            nxt = launch(0)
        while nxt is not None:
            hi, K, ok, i, j = nxt
            nxt = launch(hi) if hi < n_p else None  # the device works on the next chunk meanwhile
            if not bool(ok):
                raise_nonfinite(call, "pair blocks")
            asm.add(K, i, j)
            del K
    return asm.to_bsr()

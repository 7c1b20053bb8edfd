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


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``; elsewhere nothing).

    Arrays between ~128 kB and 32 MB (the pair list's temporaries below about 4 M pairs) come
    from the heap once glibc has raised its mmap threshold, and free heap below a live array is
    not returned by itself: measured, 50 MB kept after the list of a 50,000-atom glass, on top of
    which the output would be allocated."""
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
    release_freed_memory()  # what the list build freed, before the pattern and the output
    asm = BsrAssembly(pairs.i, pairs.j, n, dtype)
    release_freed_memory()  # the pattern sort's temporaries
    if n_p:
        cap = min(bucket(n_p), chunk_pairs())
        pot, Rd, s = cast_potential(p.potential, dtype), to_device(R, dtype), to_device(p.species)

        def launch(lo):
            hi = min(lo + cap, n_p)
            i, j, shift, mask = padded(_chunk(pairs, lo, hi), cap)
            i, j = to_device(i), to_device(j)
            K, ok = blocks_and_check(pot, Rd, s, i, j, to_device(shift, dtype), to_device(mask))
            return hi, K, ok, i, j

        nxt = launch(0)
        while nxt is not None:
            hi, K, ok, i, j = nxt
            nxt = launch(hi) if hi < n_p else None  # the device works on the next chunk meanwhile
            if not bool(ok):
                raise_nonfinite(call, "pair blocks")
            asm.add(K, i, j)
            del K
    return asm.to_bsr()

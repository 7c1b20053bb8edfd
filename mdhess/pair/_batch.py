"""Hessians of several frames of equal N in one jitted call (``jax.vmap`` over a batch).

On an accelerator one frame of a few hundred atoms leaves the device mostly idle and every call
pays a dispatch; a batch of frames, padded to one common bucketed pair capacity and stacked,
runs the same block kernel (``_compute.pair_geometry`` + ``_blocks.pair_blocks``) once for all of
them. Pair lists are still built and validated on the host, frame by frame (``_prepare.Prepared``).
On a CPU batching gains nothing; the CLI batches only off the CPU unless asked.
"""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from .._device import jit, to_device
from .._errors import InputError, MemoryPlanError, NonFiniteError
from . import _planner
from ._blocks import pair_blocks
from ._compute import pair_geometry
from ._layouts import HESSIAN_FORMATS, bsr_from_device_blocks, dense_from_blocks
from ._pairs import bucket, padded
from ._prepare import Prepared, cast_potential, raise_nonfinite, resolve_dtype

MAX_BATCH = 16  # automatic batches hold at most this many frames
MEMORY_SHARE = 0.5  # automatic batches use at most this share of the memory limit


def _one_frame_blocks(potential, R, species, i, j, shift, mask):
    d, pp = pair_geometry(potential, R, species, i, j, shift)
    return pair_blocks(potential.phi_eff, d, pp, mask)


@jit
def _blocks_batched(potential, R, species, i, j, shift, mask):
    """(B, cap, 3, 3) blocks of B stacked frames and a (B,) all-finite flag per frame."""
    K = jax.vmap(_one_frame_blocks, in_axes=(None, 0, 0, 0, 0, 0, 0))(
        potential, R, species, i, j, shift, mask
    )
    return K, jnp.all(jnp.isfinite(K), axis=(1, 2, 3))


@partial(jit, static_argnames=("n_atoms",))
def _dense_batched(potential, R, species, i, j, shift, mask, n_atoms: int):
    """(B, 3N, 3N) dense Hessians of B stacked frames and a (B,) all-finite flag per frame."""
    K, ok = _blocks_batched(potential, R, species, i, j, shift, mask)
    H = jax.vmap(lambda K1, i1, j1: dense_from_blocks(K1, i1, j1, n_atoms))(K, i, j)
    return H, ok


class _Frame:
    __slots__ = ("label", "payload", "plan", "prep")

    def __init__(self, label, payload, prep, plan):
        self.label, self.payload, self.prep, self.plan = label, payload, prep, plan


def _frame_error(label, exc):
    """The same exception type with the frame named first."""
    cls = next(c for c in (NonFiniteError, MemoryPlanError, InputError) if isinstance(exc, c))
    return cls(f"frame {label}: {exc}")


def _run_batch(batch, potential, format, dt, call):
    """Yield (payload, H) for the frames of one batch, in order; raise at the first bad frame."""
    n = batch[0].prep.n_atoms
    wrapped = [f.prep.wrapped(dt) for f in batch]  # float32 in a cell: wrapped in float64 first
    cap = bucket(max(pl.n_pairs for _, pl in wrapped))
    cols = [padded(pl, cap) for _, pl in wrapped]
    pot = cast_potential(potential, dt)
    R = to_device(np.stack([R for R, _ in wrapped]), dt)
    s = to_device(np.stack([f.prep.species for f in batch]))
    i = to_device(np.stack([c[0] for c in cols]))
    j = to_device(np.stack([c[1] for c in cols]))
    shift = to_device(np.stack([c[2] for c in cols]), dt)
    mask = to_device(np.stack([c[3] for c in cols]))
    if format == "dense":
        H, ok = _dense_batched(pot, R, s, i, j, shift, mask, n_atoms=n)
    else:
        K, ok = _blocks_batched(pot, R, s, i, j, shift, mask)
    ok = np.asarray(ok)
    for b, f in enumerate(batch):
        if format == "dense":
            out = H[b]
        else:
            out = bsr_from_device_blocks(K[b], i[b], j[b], f.prep.pairs.i, f.prep.pairs.j, n)
        if not ok[b]:
            try:
                raise_nonfinite(call, "pair blocks")
            except NonFiniteError as exc:
                raise _frame_error(f.label, exc) from None
        yield f.payload, out


def hessian_stream(
    potential, items, *, format="dense", dtype=None, memory_limit=None, batch_size=None, call="hessian_frames"
):  # fmt: skip
    """Batched Hessians of a stream of frames; items are (label, positions, box, species,
    payload) and the result yields (payload, H) in order. ``label`` names the frame in errors.

    Frames are read from ``items`` only as a batch is filled (at most one frame ahead), so a
    trajectory is streamed. A frame that fails validation, or an error reading the next item,
    is raised after the frames before it have been yielded.
    """
    check_choice(format, HESSIAN_FORMATS, call=call, name="format")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise InputError(
            f"{call}(batch_size=...) must be None (automatic) or an integer >= 1; got {batch_size!r}"
        )
    dt = resolve_dtype(dtype, call)
    limit = _planner.memory_limit(memory_limit)
    budget = MEMORY_SHARE * limit
    suggestion = "Try format='bsr' (stores only interacting blocks) or mdhess.hvp(...) (products H @ v without storing H)."
    it = iter(items)
    carry, pending_error, done = None, None, False
    while not done:
        batch, total = [], 0
        if carry is not None:
            batch, total, carry = [carry], carry.plan.total_bytes, None
        while True:
            if batch_size is not None and len(batch) >= batch_size:
                break
            if batch_size is None and len(batch) >= MAX_BATCH:
                break
            try:
                item = next(it)
            except StopIteration:
                done = True
                break
            except Exception as exc:  # noqa: BLE001 - a failed read: finish the frames before it
                pending_error, done = exc, True
                break
            label, positions, box, species, payload = item
            try:
                prep = Prepared(potential, positions, box, species, call, memory_limit=limit)
                plan = _planner.estimate_memory(prep.n_atoms, prep.pairs.n_pairs, format=format, dtype=dt)
                _planner.check(plan, limit, suggestion=suggestion)
            except (InputError, MemoryPlanError) as exc:
                pending_error, done = _frame_error(label, exc), True
                break
            f = _Frame(label, payload, prep, plan)
            if batch and (
                f.prep.n_atoms != batch[0].prep.n_atoms
                or (batch_size is None and total + plan.total_bytes > budget)
            ):
                carry = f  # starts the next batch
                break
            batch.append(f)
            total += plan.total_bytes
        if batch:
            yield from _run_batch(batch, potential, format, dt, call)
    if pending_error is not None:
        raise pending_error


def hessian_frames(
    potential, frames, *, boxes=None, species=None, format="dense", dtype=None, memory_limit=None, batch_size=None
):  # fmt: skip
    """Hessians of several frames of equal N, batched with ``jax.vmap``; yields one per frame, in order.

    Each yielded Hessian equals ``mdhess.hessian(potential, frames[k], box=boxes[k],
    species=..., format=format, dtype=dtype)`` to rounding.

    Args:
        potential: an mdhess potential.
        frames: iterable of (N, 3) positions (or an (F, N, 3) array); read lazily.
        boxes: None (free space for every frame), or an iterable with one box per frame (each
            as ``box`` of ``mdhess.hessian``).
        species: None, one (N,) array for every frame, or an iterable of per-frame (N,) arrays.
        format: "dense" (JAX arrays) or "bsr" (scipy BSR).
        dtype: None (float64), "float64" or "float32".
        memory_limit: bytes (or "8G"); default as for ``mdhess.hessian``.
        batch_size: frames per jitted call; None picks the largest number whose summed
            ``estimate_memory`` stays within half the memory limit, at most 16.

    Raises:
        InputError: a bad frame; the message starts with "frame K:" (K counts from 0).
        MemoryPlanError: one frame alone exceeds the limit.
        NonFiniteError: a frame's blocks came out NaN or infinite (message names the frame).
    """
    box_it = itertools.repeat(None) if boxes is None else iter(boxes)
    if species is None or np.ndim(species) == 1:
        sp_it = itertools.repeat(species)
    else:
        sp_it = iter(species)
    items = ((k, R, b, s, k) for k, (R, b, s) in enumerate(zip(frames, box_it, sp_it)))
    for _, H in hessian_stream(
        potential, items, format=format, dtype=dtype, memory_limit=memory_limit, batch_size=batch_size
    ):
        yield H

"""Batched Hessians of several frames (mdhess.pair._batch.hessian_frames) against mdhess.hessian."""

import numpy as np
import pytest

import mdhess
from mdhess._errors import InputError, NonFiniteError
from mdhess.pair import _batch
from mdhess.pair._batch import hessian_frames
from mdhess.pair._prepare import Prepared

TWO_SPECIES = mdhess.lennard_jones(
    sigma=np.array([[1.0, 0.8], [0.8, 0.88]]), epsilon=np.array([[1.0, 1.5], [1.5, 0.5]]), cutoff=2.5
)


def _frames(n_frames=5, n_side=4, a=1.6, seed=0):
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    frames = [g + rng.normal(0, 0.05, g.shape) for _ in range(n_frames)]
    boxes = [
        np.array([1.0, 1.02, 0.99]) * n_side * a * (1 + 0.01 * k) for k in range(n_frames)
    ]  # orthorhombic
    species = rng.integers(0, 2, len(g))
    return frames, boxes, species


def _close(H, ref, fmt):
    if fmt == "bsr":
        np.testing.assert_array_equal(H.indptr, ref.indptr)
        np.testing.assert_array_equal(H.indices, ref.indices)
        H, ref = H.data, ref.data
    H, ref = np.asarray(H), np.asarray(ref)
    assert H.shape == ref.shape
    assert np.abs(H - ref).max() <= 1e-13 * np.abs(ref).max()


@pytest.mark.parametrize("fmt", ["dense", "bsr"])
@pytest.mark.parametrize("batch_size", [1, 3, None])
def test_batched_equals_hessian_per_frame(fmt, batch_size):
    frames, boxes, species = _frames()
    out = list(
        hessian_frames(TWO_SPECIES, frames, boxes=boxes, species=species, format=fmt, batch_size=batch_size)
    )
    assert len(out) == len(frames)
    for k, H in enumerate(out):
        _close(H, mdhess.hessian(TWO_SPECIES, frames[k], box=boxes[k], species=species, format=fmt), fmt)


def test_free_space_no_cutoff_and_per_frame_species():
    frames, _, species = _frames(n_frames=3, n_side=3)
    pot = mdhess.lennard_jones(sigma=np.array([[1.0, 0.8], [0.8, 0.88]]), epsilon=1.0)  # no cutoff: list path
    per_frame = [np.roll(species, k) for k in range(3)]
    out = list(hessian_frames(pot, np.stack(frames), species=per_frame, batch_size=2))
    for k, H in enumerate(out):
        _close(H, mdhess.hessian(pot, frames[k], species=per_frame[k]), "dense")


def test_planner_picks_fewer_frames_when_memory_is_small(monkeypatch):
    frames, boxes, species = _frames(n_frames=6)
    per_frame = [
        _batch._planner.estimate_memory(
            len(species), Prepared(TWO_SPECIES, R, b, species, "t").pairs.n_pairs
        ).total_bytes
        for R, b in zip(frames, boxes)
    ]
    assert 3 * min(per_frame) > 2.5 * max(per_frame)
    sizes = []
    real = _batch._run_batch

    def spy(batch, *args):
        sizes.append(len(batch))
        return real(batch, *args)

    monkeypatch.setattr(_batch, "_run_batch", spy)
    list(hessian_frames(TWO_SPECIES, frames, boxes=boxes, species=species))
    assert sizes == [6]
    sizes.clear()
    out = list(
        hessian_frames(
            TWO_SPECIES, frames, boxes=boxes, species=species, memory_limit=int(2 * 2.5 * max(per_frame))
        )
    )
    assert sizes == [2, 2, 2] and len(out) == 6


def test_nan_frame_is_named_after_the_frames_before_it():
    frames, boxes, species = _frames(n_frames=4)
    frames[2] = frames[2].copy()
    frames[2][5, 1] = np.nan
    gen = hessian_frames(TWO_SPECIES, frames, boxes=boxes, species=species, batch_size=3)
    assert len([next(gen), next(gen)]) == 2  # frames 0 and 1 come out first
    with pytest.raises(
        InputError, match=r"^frame 2: hessian_frames\(positions=...\) has non-finite coordinates at atom 5"
    ):
        next(gen)


def test_non_finite_blocks_raise_nonfinite_error_naming_the_frame():
    frames, boxes, species = _frames(n_frames=2)
    frames[1] = frames[1].copy()
    frames[1][3] = frames[1][2] + 1e-200  # coincident within rounding: caught on the host
    with pytest.raises(InputError, match="frame 1:"):
        list(hessian_frames(TWO_SPECIES, frames, boxes=boxes, species=species))
    bad = mdhess.pair_potential(lambda r, c: c / (r - 1.0), c=1.0, cutoff=2.5)  # singular at r = 1
    R = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.5, 0.0]])
    with pytest.raises(NonFiniteError, match="frame 1: hessian_frames: non-finite pair blocks"):
        list(hessian_frames(bad, [R * 1.2, R], batch_size=2))


def test_bad_arguments():
    frames, _, _ = _frames(n_frames=1)
    with pytest.raises(InputError, match="format"):
        next(hessian_frames(TWO_SPECIES, frames, format="csr"))
    with pytest.raises(InputError, match="batch_size"):
        next(hessian_frames(TWO_SPECIES, frames, batch_size=0))

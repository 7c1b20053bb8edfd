"""Raw chunk writes and the frame checksum taken from memory (io/_hdf5.py write_raw_chunks,
recording_chunks; io/_results.py frame_digest(known=...)).

Reference: HDF5's own write (``create_dataset(data=...)``) and ``frame_digest`` reading every
stored chunk back. Exact equality: the same bytes must be stored and the same digest formed."""

import h5py
import numpy as np
import pytest
import scipy.sparse

from mdhess.io._frames import dataset, write_hessian_frame
from mdhess.io._hdf5 import recording_chunks, write_raw_chunks
from mdhess.io._results import frame_digest
from mdhess.io._trajectory import Frame

ARRAYS = {
    "blocks": (np.random.default_rng(0).normal(size=(1001, 3, 3)), 128),  # last chunk partial
    "exact": (np.random.default_rng(1).normal(size=(512, 3, 3)), 128),  # chunks divide the rows
    "int32": (np.arange(777, dtype=np.int32), 100),
    "matrix": (np.random.default_rng(2).normal(size=(30, 30)), 7),
    "big-endian": (np.random.default_rng(3).normal(size=(50, 3)).astype(">f8"), 16),
    "bool": (np.random.default_rng(4).random(33) < 0.5, 10),
    "one-chunk": (np.ones((5, 3)), 5),
}


def stored_chunks(ds):
    out = {}
    for k in range(ds.id.get_num_chunks()):
        offset = tuple(ds.id.get_chunk_info(k).chunk_offset)
        out[offset] = ds.id.read_direct_chunk(offset)
    return out


@pytest.mark.parametrize("name", list(ARRAYS))
def test_raw_chunks_store_what_hdf5_stores(tmp_path, name):
    data, rows = ARRAYS[name]
    with h5py.File(tmp_path / "f.h5", "w") as f:
        ref = f.create_dataset("ref", data=data, chunks=(rows,) + data.shape[1:])
        with recording_chunks() as memo:
            raw = write_raw_chunks(f, "raw", data, rows)
        assert raw.dtype == ref.dtype and raw.shape == ref.shape and raw.chunks == ref.chunks
        assert stored_chunks(raw) == stored_chunks(ref)  # the same bytes, padding included
        np.testing.assert_array_equal(raw[()], data)
        dtype, shape, chunks, digests = memo["/raw"]
        assert (dtype, shape, chunks) == (ref.dtype.str, ref.shape, ref.chunks)
        assert len(digests) == ref.id.get_num_chunks()


def frame_and_hessians():
    rng = np.random.default_rng(5)
    n = 40
    frame = Frame(index=3, positions=rng.normal(size=(n, 3)), box=np.eye(3) * 5.0, species=np.zeros(n, np.int32), masses=None)
    A = scipy.sparse.random(n, n, density=0.2, random_state=6) + scipy.sparse.eye(n)
    pattern = scipy.sparse.kron(A + A.T, np.ones((3, 3)), format="bsr").tobsr(blocksize=(3, 3))
    pattern.data = rng.normal(size=pattern.data.shape)
    return frame, {"bsr": pattern, "dense": pattern.toarray()}


@pytest.mark.parametrize("kind", ["bsr", "dense"])
@pytest.mark.parametrize("compression", ["auto", "gzip", "none"])
def test_digest_from_memory_equals_read_back(tmp_path, monkeypatch, kind, compression):
    monkeypatch.setattr("mdhess.io._frames.CHUNK_BYTES", 4096)  # several chunks per dataset
    frame, H = frame_and_hessians()
    with h5py.File(tmp_path / "f.h5", "w") as f:
        g = f.create_group("frames/000000")
        with recording_chunks() as known:
            write_hessian_frame(g, frame, H[kind], compression=compression)
        g.attrs["extra"] = 1.5
        assert frame_digest(g, known) == frame_digest(g)
        raw = {  # what goes uncompressed (docs/file-formats.md); the frame's own arrays are gzipped
            ("bsr", "auto"): {"data", "indices", "indptr"}, ("bsr", "none"): {"data", "indices", "indptr"}, ("dense", "none"): {""},
        }.get((kind, compression), set())  # fmt: skip
        assert set(known) == {"/frames/000000/hessian" + (f"/{r}" if r else "") for r in raw}
        if not known:
            return
        # a record that no longer describes the dataset is not used: the chunks are read
        name = next(iter(known))
        dtype, shape, chunks, digests = known[name]
        stale = dict(known)
        stale[name] = (dtype, shape, chunks, [(o, m, b"\0" * 32) for o, m, _ in digests][:-1] if len(digests) > 1 else [])
        assert frame_digest(g, stale) == frame_digest(g)
        # ... while a record that matches is trusted as written (it is formed only as the data is)
        forged = dict(known)
        forged[name] = (dtype, shape, chunks, [(o, m, b"\0" * 32) for o, m, _ in digests])
        assert frame_digest(g, forged) != frame_digest(g)


def test_dataset_raw_only_when_uncompressed(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f, recording_chunks() as known:
        dataset(f, "gz", np.arange(1000.0))
        dataset(f, "raw", np.arange(1000.0), compress=False)
        dataset(f, "text", np.array([b"a", b"bc"]), compress=False)
        assert f["gz"].compression == "gzip" and f["raw"].compression is None
        assert set(known) == {"/raw"}

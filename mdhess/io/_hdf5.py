"""Opening HDF5 files with errors that name the file and what is wrong with it; writing raw
chunks whose checksums are taken from memory; putting a finished output in place."""

import contextlib
import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from .._errors import InputError

# what the "not an HDF5 file" and "unknown format" messages list (docs/file-formats.md)
READABLE_FORMATS = (
    "mdhess reads trajectories as HDF5 (H5MD 1.1, MDTraj, the minimal layout), extended XYZ (.xyz, .extxyz), "
    "LAMMPS dump text (.dump, .lammpstrj) and data (.data, .lmp) files, and DCD, XTC or TRR with a topology "
    "file (through MDAnalysis)"
)


def open_hdf5(path, *, what: str = "input"):
    """Open an existing HDF5 file read-only.

    Raises:
        InputError: the file is missing, is a directory, is not HDF5, or is truncated/damaged.
    """
    import h5py

    p = Path(os.fspath(path))
    if not p.exists():
        noun = what if what == "file" or what.endswith(" file") else f"{what} file"  # not "file file"
        raise InputError(f"{noun} not found: {str(p)!r}")
    if p.is_dir():
        raise InputError(f"{what} {str(p)!r} is a directory, not an HDF5 file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"{what} {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    if not h5py.is_hdf5(str(p)):
        kind = "empty" if not head else "not an HDF5 file"
        if what in ("trajectory", "input", "file"):
            raise InputError(f"{what} {str(p)!r} is {kind}; {READABLE_FORMATS}")
        raise InputError(f"{what} {str(p)!r} is {kind} (an mdhess {what} file is HDF5)")
    try:
        return h5py.File(str(p), "r")
    except OSError as exc:
        raise InputError(f"{what} {str(p)!r} is truncated or damaged and cannot be opened as HDF5 ({first_line(exc)})") from None


def replace_output(finished, output) -> None:
    """Put the finished, closed file ``finished`` in place as ``output`` (same folder).

    An existing ``output`` is removed first, then ``finished`` renamed: never renamed over it.
    ext4 (its default auto_da_alloc) writes out a file renamed over another before the rename
    returns: 0.3 s for a 1.1 GB file even when the old one is tiny (docs/cli.md, Output). Between
    the two calls neither file is at ``output``; callers keep ``finished`` where a later run
    finds it.
    """
    if os.path.lexists(output):
        os.unlink(output)
    os.replace(finished, output)


def read_slice(dataset, index, *, path, what: str):
    """dataset[index] with read failures (truncated data) turned into InputError naming ``what``."""
    try:
        return dataset[index]
    except (OSError, RuntimeError, KeyError) as exc:
        raise InputError(f"{path}: cannot read {what} from {dataset.name} (truncated or damaged file? {first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    s = str(exc).strip().splitlines()
    return s[0] if s else type(exc).__name__


def attr_str(value) -> str | None:
    """An HDF5 string attribute (bytes, str or a 1-element array of them) as str."""
    import numpy as np

    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(()).item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# -- raw chunks, checksummed as they are written ------------------------------------------------------
_memo = threading.local()


@contextlib.contextmanager
def recording_chunks():
    """Within the block, ``write_raw_chunks`` (this thread) records the SHA-256 of every chunk it
    stores, by dataset name: ``{name: (dtype.str, shape, chunks, [(offset, 0, digest), ...])}``,
    the tuples ``frame_digest`` forms from the stored chunks, so the checksum of a frame needs no
    read-back of its raw datasets (9.4 MB a frame of the 2000-atom CLI benchmark)."""
    memo: dict = {}
    prev = getattr(_memo, "chunks", None)
    _memo.chunks = memo
    try:
        yield memo
    finally:
        _memo.chunks = prev


def write_raw_chunks(group, name: str, data: np.ndarray, rows: int):
    """An uncompressed dataset chunked ``(rows,) + data.shape[1:]``, its chunks written as bytes
    (``H5Dwrite_chunk``: no chunk cache, no copy through HDF5's selection machinery; ~1.3x faster
    than ``create_dataset(data=...)`` for 9.4 MB). The last chunk is padded with zeros, as HDF5
    pads it itself (the stored chunks are the same bytes either way: tests/test_results_digest.py).

    Args:
        group: h5py group; name: dataset name; data: numeric array, ndim >= 1, size > 0.
        rows: rows per chunk.
    """
    data = np.ascontiguousarray(data)
    chunks = (int(rows),) + data.shape[1:]
    ds = group.create_dataset(name, shape=data.shape, dtype=data.dtype, chunks=chunks)
    memo = getattr(_memo, "chunks", None)
    digests = []
    tail = (0,) * (data.ndim - 1)
    for lo in range(0, data.shape[0], rows):
        block = data[lo : lo + rows]
        if block.shape[0] < rows:
            padded = np.zeros(chunks, data.dtype)
            padded[: block.shape[0]] = block
            block = padded
        raw = block.reshape(-1).view(np.uint8)  # the chunk's bytes (any byte order)
        ds.id.write_direct_chunk((lo,) + tail, raw)
        if memo is not None:
            digests.append(((lo,) + tail, 0, hashlib.sha256(raw).digest()))
    if memo is not None:
        memo[ds.name] = (data.dtype.str, data.shape, chunks, digests)
    return ds

"""Opening HDF5 files with errors that name the file and what is wrong with it."""

import os
from pathlib import Path

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

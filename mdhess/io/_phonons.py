"""Phonon band-structure and density-of-states files (HDF5), written atomically and read back.

Layout (docs/file-formats.md, "Phonon files"):

    /                 attrs: mdhess_kind = "phonons", mdhess_file_version, mdhess_version,
                      frequency_unit, units, plus the caller's attributes (JSON for dicts/lists)
    /structure        positions (n, 3), cell (3, 3) rows are cell vectors, masses (n,)
    /bands            q (nq, 3) reduced, x (nq,) path distance (1/length, 2 pi included),
                      frequencies (nq, 3n) signed (imaginary negative); attrs path,
                      special_x (k,), special_labels (JSON list)
    /dos              frequency (g,), dos (g,) modes per cell per unit; attrs mesh (3,), width,
                      n_q

The file is written to a temporary name in the output's folder and renamed into place when
complete, so a reader never sees half a file; an existing file is refused unless
``overwrite=True``.
"""

import json
import os
from pathlib import Path

import numpy as np

from .._errors import InputError
from ._hdf5 import attr_str, open_hdf5

PHONON_FILE_VERSION = 1


def write_phonons(path, *, bands, dos, positions, cell, masses, attrs=None, overwrite: bool = False) -> str:
    """Write a band structure and a DOS (``mdhess.Phonons.band_structure`` / ``.dos`` results).

    Args:
        path: the output file.
        bands: a ``BandStructure`` (q, x, frequencies, special_x, special_labels, unit, path).
        dos: a ``PhononDOS`` (frequency, dos, mesh, width, unit, n_q).
        positions, cell, masses: the structure (length and mass units of the potential).
        attrs: extra root attributes (JSON-encoded when dicts, lists or None).
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        InputError: the file exists and overwrite is False; the output folder is missing.
    """
    import h5py

    from .._version import __version__

    out = Path(os.fspath(path))
    if out.exists() and not overwrite:
        raise InputError(f"output {str(out)!r} exists; pass overwrite=True to replace it")
    if not out.parent.is_dir():
        raise InputError(f"output folder {str(out.parent)!r} does not exist")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["mdhess_kind"] = "phonons"
            f.attrs["mdhess_file_version"] = PHONON_FILE_VERSION
            f.attrs["mdhess_version"] = __version__
            f.attrs["frequency_unit"] = bands.unit
            for key, v in (attrs or {}).items():
                f.attrs[key] = json.dumps(v) if isinstance(v, (dict, list, tuple)) or v is None else v
            s = f.create_group("structure")
            s.create_dataset("positions", data=np.asarray(positions, dtype=np.float64))
            s.create_dataset("cell", data=np.asarray(cell, dtype=np.float64))
            s.create_dataset("masses", data=np.asarray(masses, dtype=np.float64))
            b = f.create_group("bands")
            b.create_dataset("q", data=np.asarray(bands.q, dtype=np.float64))
            b.create_dataset("x", data=np.asarray(bands.x, dtype=np.float64))
            b.create_dataset("frequencies", data=np.asarray(bands.frequencies, dtype=np.float64))
            b.attrs["path"] = bands.path
            b.attrs["special_x"] = np.asarray(bands.special_x, dtype=np.float64)
            b.attrs["special_labels"] = json.dumps(list(bands.special_labels))
            d = f.create_group("dos")
            d.create_dataset("frequency", data=np.asarray(dos.frequency, dtype=np.float64))
            d.create_dataset("dos", data=np.asarray(dos.dos, dtype=np.float64))
            d.attrs["mesh"] = np.asarray(dos.mesh, dtype=np.int64)
            d.attrs["width"] = float(dos.width)
            d.attrs["n_q"] = int(dos.n_q)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return os.fspath(out)


def read_phonons(path) -> dict:
    """A phonon file as a dict: "attrs" (root attributes), "structure", "bands", "dos" (each a dict
    of numpy arrays and attributes).

    Raises:
        InputError: missing, not HDF5, or not an mdhess phonon file.
    """
    with open_hdf5(path, what="phonon file") as f:
        kind = attr_str(f.attrs.get("mdhess_kind"))
        if kind != "phonons":
            raise InputError(f"phonon file {os.fspath(path)!r} is not an mdhess phonon file (mdhess_kind={kind!r})")
        out = {"attrs": {k: (attr_str(v) if isinstance(v, (bytes, str)) else v) for k, v in f.attrs.items()}}
        for g in ("structure", "bands", "dos"):
            out[g] = {k: np.asarray(v) for k, v in f[g].items()}
            for k, v in f[g].attrs.items():
                out[g][k] = attr_str(v) if isinstance(v, (bytes, str)) else np.asarray(v)
        out["bands"]["special_labels"] = json.loads(out["bands"]["special_labels"])
    return out

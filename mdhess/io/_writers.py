"""Trajectory writers for the three input layouts (used by examples/make_data.py and the tests).

They write what the readers in ``_trajectory`` expect and what other tools read: the H5MD
writer follows H5MD 1.1 with a time-dependent box (MDAnalysis reads it), the MDTraj writer
follows MDTraj's HDF5 conventions (``mdtraj.load`` reads it).
"""

import json
import os

import numpy as np

from .._errors import InputError
from ._trajectory import SPECIES_MAX, lengths_angles_from_cell


def _frames(positions, call):
    R = np.asarray(positions, dtype=np.float64)
    if R.ndim == 2:
        R = R[None]
    if R.ndim != 3 or R.shape[2] != 3:
        raise InputError(f"{call}(positions=...) expects shape (frames, atoms, 3); got {R.shape}")
    return R


def _species(species, call):
    """Species as int32: whole numbers in 0..2^31-1 (never truncated or wrapped). The shape is
    written as given (the tests write files whose atom counts disagree on purpose)."""
    s = np.asarray(species)
    if s.dtype.kind not in "iuf":
        raise InputError(f"{call}(species=...) must be integers; got dtype {s.dtype}")
    whole = np.isfinite(s) & (s == np.floor(s)) if s.dtype.kind == "f" else np.ones(s.shape, bool)
    bad = ~whole | (s < 0) | (s > SPECIES_MAX)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{call}(species=...) must be integers in 0..{SPECIES_MAX}; got {s.flat[i].item()!r} at index {i}")
    return s.astype(np.int32)


def _boxes(box, n_frames, call):
    """None, or (F, 3, 3) cells from (3,), (3, 3), (F, 3) or (F, 3, 3)."""
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float64)
    if b.shape == (3,):
        b = np.diag(b)
    if b.shape == (3, 3):
        return np.broadcast_to(b, (n_frames, 3, 3)).copy()
    if b.shape == (n_frames, 3):
        return np.stack([np.diag(x) for x in b])
    if b.shape == (n_frames, 3, 3):
        return b.copy()
    raise InputError(f"{call}(box=...) must be (3,), (3, 3), (F, 3) or (F, 3, 3); got {b.shape}")


def write_h5md(path, positions, *, box=None, species=None, masses=None, time=None, group="all", unit=None,
               author="mdhess", dtype="float64"):  # fmt: skip
    """Write an H5MD 1.1 file: particles/<group>/{position, box, species, mass}.

    Args:
        positions: (F, N, 3). box: None (boundary "none") or any of (3,), (3, 3), (F, 3),
            (F, 3, 3); written as a time-dependent ``box/edges`` of (F, 3, 3) cells.
        species: (N,) integers; masses: (N,); time: (F,) (default 0, 1, 2, ...).
        unit: optional length unit string stored as the ``unit`` attribute (e.g. "nm").
    """
    import h5py

    from .._version import __version__

    R = _frames(positions, "write_h5md")
    F, N, _ = R.shape
    boxes = _boxes(box, F, "write_h5md")
    species = None if species is None else _species(species, "write_h5md")
    t = np.arange(F, dtype=np.float64) if time is None else np.asarray(time, dtype=np.float64)
    step = np.arange(F, dtype=np.int64)
    with h5py.File(os.fspath(path), "w") as f:
        h = f.create_group("h5md")
        h.attrs["version"] = np.array([1, 1], dtype=np.int32)
        h.create_group("author").attrs["name"] = author
        c = h.create_group("creator")
        c.attrs["name"], c.attrs["version"] = "mdhess", __version__
        g = f.create_group(f"particles/{group}")
        pos = g.create_group("position")
        v = pos.create_dataset("value", data=R.astype(dtype), chunks=(1, N, 3), compression="gzip")
        if unit is not None:
            v.attrs["unit"] = unit
        pos.create_dataset("step", data=step)
        pos.create_dataset("time", data=t)
        bx = g.create_group("box")
        bx.attrs["dimension"] = np.int32(3)
        kind = "periodic" if boxes is not None else "none"
        bx.attrs["boundary"] = np.array([kind.encode()] * 3, dtype="S8")
        if boxes is not None:
            e = bx.create_group("edges")
            ev = e.create_dataset("value", data=boxes)
            if unit is not None:
                ev.attrs["unit"] = unit
            e.create_dataset("step", data=step)
            e.create_dataset("time", data=t)
        if species is not None:
            g.create_dataset("species", data=species)
        if masses is not None:
            g.create_dataset("mass", data=np.asarray(masses, dtype=np.float64))


def write_mdtraj(path, positions_nm, *, box=None, atom_names=None, time=None):
    """Write MDTraj's HDF5 layout: coordinates (float32, nm), cell_lengths/cell_angles, topology.

    Args:
        positions_nm: (F, N, 3) in nanometres (MDTraj's unit).
        box: None or cells as in ``write_h5md``; each cell must have a along x and b in the xy
            plane (MDTraj's orientation), so that lengths and angles describe it exactly.
        atom_names: (N,) strings (species names); default "X".
        time: (F,) picoseconds (default 0, 1, 2, ...).
    """
    import h5py

    from .._version import __version__

    R = _frames(positions_nm, "write_mdtraj")
    F, N, _ = R.shape
    boxes = _boxes(box, F, "write_mdtraj")
    names = ["X"] * N if atom_names is None else [str(a) for a in atom_names]
    if len(names) != N:
        raise InputError(f"write_mdtraj(atom_names=...) needs {N} names; got {len(names)}")
    top = {
        "chains": [{"index": 0, "residues": [{"index": i, "name": names[i], "resSeq": i + 1, "segmentID": "",
                                              "atoms": [{"index": i, "name": names[i], "element": "VS"}]}
                                             for i in range(N)]}],
        "bonds": [],
    }  # fmt: skip
    with h5py.File(os.fspath(path), "w") as f:
        f.attrs.update(
            {"conventions": "Pande", "conventionVersion": "1.1", "program": "mdhess", "programVersion": __version__,
             "title": "mdhess", "application": "mdhess"}  # fmt: skip
        )
        c = f.create_dataset("coordinates", data=R.astype(np.float32), chunks=(1, N, 3), compression="gzip")
        c.attrs["units"] = "nanometers"
        tt = f.create_dataset("time", data=(np.arange(F) if time is None else np.asarray(time)).astype(np.float32))
        tt.attrs["units"] = "picoseconds"
        if boxes is not None:
            L, A = zip(*(lengths_angles_from_cell(b) for b in boxes))
            for b, ll in zip(boxes, L):
                if abs(b[0, 1]) + abs(b[0, 2]) + abs(b[1, 2]) > 1e-12 * max(ll):
                    raise InputError(
                        "write_mdtraj(box=...) cells must have a along x and b in the xy plane "
                        f"(lower triangular); got {b.tolist()}"
                    )
            cl = f.create_dataset("cell_lengths", data=np.asarray(L, dtype=np.float32))
            cl.attrs["units"] = "nanometers"
            ca = f.create_dataset("cell_angles", data=np.asarray(A, dtype=np.float32))
            ca.attrs["units"] = "degrees"
        f.create_dataset("topology", data=np.array([json.dumps(top).encode()]))


def write_minimal(path, positions, *, box=None, species=None, masses=None, unit=None):
    """Write the minimal layout: positions (F, N, 3), optional box, species (N,), masses (N,).

    ``unit``: optional length unit stored as the ``unit`` attribute of positions and box (e.g.
    "Angstrom"); without it the file declares no unit (right for reduced units).
    """
    import h5py

    R = _frames(positions, "write_minimal")
    species = None if species is None else _species(species, "write_minimal")
    with h5py.File(os.fspath(path), "w") as f:
        p = f.create_dataset("positions", data=R)
        if unit is not None:
            p.attrs["unit"] = unit
        if box is not None:
            b = f.create_dataset("box", data=np.asarray(box, dtype=np.float64))
            if unit is not None:
                b.attrs["unit"] = unit
        if species is not None:
            f.create_dataset("species", data=species)
        if masses is not None:
            f.create_dataset("masses", data=np.asarray(masses, dtype=np.float64))

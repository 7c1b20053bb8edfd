"""One frame of a Hessian or modes file: the contents of a ``frames/<slot:06d>`` group, written
and read here and nowhere else (docs/file-formats.md).

Every frame group holds the frame as used: ``positions``, ``box`` (absent in free space),
``species`` and ``masses`` when known. A Hessian frame adds ``hessian``: a dense (3N, 3N) dataset,
or a BSR group (``data``, ``indices``, ``indptr``; attributes ``format``, ``shape``,
``blocksize``). A modes frame adds ``eigenvalues``, ``frequencies``, ``participation_ratio``,
``vectors``, ``displacements``, the solver's attributes and, optionally, ``thermo_*``
attributes. A quenched frame (minimised by ``mdhess.minimize`` before its Hessian) stores the minimised
positions as ``positions`` and adds ``quench_*`` attributes (``max_force``, ``energy``,
``iterations``, ``converged``, ``method``, ``fmax``); files without them were not quenched.
``ResultRun.write_frame`` adds ``source_frame`` and ``complete``.

The readers take an open ``ResultFile`` (anything with ``group(slot)``, ``array(group, name)``,
``frame_index`` and ``json_attr(name)``) and a slot.
"""

import numpy as np

from .._checks import check_choice
from .._errors import InputError
from ._hdf5 import write_raw_chunks
from ._trajectory import Frame

CHUNK_BYTES = 1 << 20
HESSIAN_COMPRESSIONS = ("auto", "gzip", "none")


def dataset(group, name, data, *, compress=True):
    """Write a chunked dataset (about 1 MiB chunks along the first axis).

    Args:
        group: the h5py group to write into.
        name: dataset name.
        data: array-like; scalars and empty arrays are written unchunked.
        compress: gzip (level 1, byte shuffle) when True; else numeric arrays are written chunk
            by chunk as raw bytes (``_hdf5.write_raw_chunks``: the frame checksum then comes from
            memory).

    Returns:
        The h5py dataset.
    """
    data = np.asarray(data)
    if data.size == 0 or data.ndim == 0:
        return group.create_dataset(name, data=data)
    row = max(1, data.itemsize * int(np.prod(data.shape[1:], dtype=np.int64)))
    rows = int(min(data.shape[0], max(1, CHUNK_BYTES // row)))
    if not compress and data.dtype.kind in "biufc":
        return write_raw_chunks(group, name, data, rows)
    kw = {"compression": "gzip", "compression_opts": 1, "shuffle": True} if compress else {}
    return group.create_dataset(name, data=data, chunks=(rows,) + data.shape[1:], **kw)


# -- the frame itself --------------------------------------------------------------------------------
def write_frame_arrays(group, frame: Frame) -> None:
    """Write the arrays every frame group holds: positions, and box, species, masses when known.

    Args:
        group: the frame's h5py group.
        frame: the frame as used (``index`` and ``time`` are not written).
    """
    dataset(group, "positions", frame.positions)
    if frame.box is not None:
        group.create_dataset("box", data=frame.box)
    if frame.species is not None:
        dataset(group, "species", np.asarray(frame.species, np.int32))
    if frame.masses is not None:
        dataset(group, "masses", frame.masses)


def read_frame(result, slot: int) -> Frame:
    """The frame stored in slot ``slot`` of a Hessian or modes file.

    Args:
        result: an open ``ResultFile``.
        slot: position in the file (negative counts from the end).

    Returns:
        ``Frame`` with ``index`` the source frame; box, species and masses None when not stored.

    Raises:
        InputError: slot out of range, frame not marked complete, unreadable data.
    """
    g = result.group(slot)
    return Frame(
        index=int(result.frame_index[slot]),
        positions=result.array(g, "positions"),
        box=result.array(g, "box"),
        species=result.array(g, "species"),
        masses=result.array(g, "masses"),
    )


# -- Hessian frames ----------------------------------------------------------------------------------
def write_hessian_frame(group, frame: Frame, H, *, compression: str = "auto", quench=None) -> None:
    """Fill one frame group of a Hessian file: the frame's arrays and its Hessian.

    Dense Hessians are gzip-compressed unless ``compression="none"``; the BSR arrays only with
    ``compression="gzip"`` (block values are dense floats: 15% smaller for 4x the time of
    computing them; the block indices shrink 4.6x but are 5% of the frame and their gzip took
    5 ms of a 2000-atom frame's ~35 ms of writing: docs/benchmarks.md, "Command line").

    Args:
        group: the frame's h5py group.
        frame: the frame the Hessian belongs to.
        H: (3N, 3N) array (numpy or JAX) or ``scipy.sparse.bsr_matrix``.
        compression: one of ``HESSIAN_COMPRESSIONS``.
        quench: the frame's minimisation (``mdhess.minimize``'s result), stored as ``quench_*``
            attributes, or None.

    Raises:
        InputError: unknown compression.
    """
    import scipy.sparse

    check_choice(compression, HESSIAN_COMPRESSIONS, call="write_hessian_frame", name="compression")
    write_frame_arrays(group, frame)
    write_quench(group, quench)
    on = compression != "none"
    if scipy.sparse.issparse(H):
        h = group.create_group("hessian")
        h.attrs["format"] = "bsr"
        h.attrs["shape"] = np.asarray(H.shape, dtype=np.int64)
        h.attrs["blocksize"] = np.asarray(H.blocksize, dtype=np.int64)
        dataset(h, "data", H.data, compress=compression == "gzip")
        dataset(h, "indices", H.indices, compress=compression == "gzip")
        dataset(h, "indptr", H.indptr, compress=compression == "gzip")
    else:
        dataset(group, "hessian", np.asarray(H), compress=on)


def read_hessian_frame(result, slot: int):
    """The Hessian stored in slot ``slot`` of a Hessian file.

    Args:
        result: an open ``ResultFile``.
        slot: position in the file (negative counts from the end).

    Returns:
        Dense numpy (3N, 3N) array or ``scipy.sparse.bsr_matrix``, in the dtype stored.

    Raises:
        InputError: slot out of range, no Hessian in the frame, unreadable data.
    """
    import h5py
    import scipy.sparse

    g = result.group(slot)
    h = g.get("hessian")
    positions = g.get("positions")
    n3 = 3 * int(positions.shape[0]) if isinstance(positions, h5py.Dataset) and positions.ndim == 2 else None
    where = f"{result.path!r}: frame {slot}"
    if isinstance(h, h5py.Dataset):
        if h.ndim != 2 or h.shape[0] != h.shape[1] or (n3 is not None and h.shape[0] != n3):
            raise InputError(f"{where}: the stored Hessian has shape {h.shape}, expected ({n3}, {n3}) (damaged file)")
        return result.array(g, "hessian")
    if not isinstance(h, h5py.Group):
        raise InputError(f"{where}: {g.name} has no hessian")
    data, indices, indptr = (result.array(h, n) for n in ("data", "indices", "indptr"))
    shape = _bsr_shape(h.attrs, data, indices, indptr, n3, where)
    try:
        return scipy.sparse.bsr_matrix((data, indices, indptr), shape=shape)
    except ValueError as exc:
        raise InputError(f"{where}: the stored BSR Hessian is inconsistent ({exc}; damaged file)") from None


def _bsr_shape(attrs, data, indices, indptr, n3, where) -> tuple:
    """The shape of a stored BSR Hessian after checking that its attributes and arrays agree.

    Raises:
        InputError: ``where`` and what does not fit (a damaged or tampered file).
    """

    def bad(what):
        return InputError(f"{where}: the stored BSR Hessian is inconsistent ({what}; damaged file)")

    try:
        shape = tuple(int(x) for x in np.asarray(attrs["shape"]).reshape(-1))
        blocksize = tuple(int(x) for x in np.asarray(attrs.get("blocksize", (3, 3))).reshape(-1))
    except (KeyError, TypeError, ValueError):
        raise bad("no integer shape or blocksize attribute") from None
    if len(shape) != 2 or len(blocksize) != 2 or min(blocksize) < 1 or min(shape) < 0:
        raise bad(f"shape {shape}, blocksize {blocksize}")
    if shape[0] != shape[1] or shape[0] % blocksize[0] or shape[1] % blocksize[1]:
        raise bad(f"shape {shape} with blocksize {blocksize}")
    if n3 is not None and shape[0] != n3:
        raise bad(f"shape {shape} for {n3 // 3} atoms")
    if data is None or indices is None or indptr is None:
        raise bad("data, indices or indptr missing")
    n_rows, n_cols = shape[0] // blocksize[0], shape[1] // blocksize[1]
    if data.ndim != 3 or data.shape[1:] != blocksize:
        raise bad(f"data of shape {data.shape} for {blocksize} blocks")
    if indices.ndim != 1 or indptr.ndim != 1 or indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
        raise bad("indices and indptr must be 1-d integer arrays")
    if indptr.shape[0] != n_rows + 1:
        raise bad(f"indptr has {indptr.shape[0]} entries for {n_rows} block rows")
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or indices.shape[0] != data.shape[0] or np.any(np.diff(indptr) < 0):
        raise bad(f"indptr does not match {indices.shape[0]} indices and {data.shape[0]} blocks")
    if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
        raise bad(f"a block column index outside 0..{n_cols - 1}")
    return shape


# -- modes frames ------------------------------------------------------------------------------------
def write_modes_frame(group, frame: Frame, modes, thermo=None, *, quench=None) -> None:
    """Fill one frame group of a modes file.

    Args:
        group: the frame's h5py group.
        frame: the frame the modes belong to (masses None: the modes' masses are stored).
        modes: ``mdhess.NormalModes`` of the frame.
        thermo: ``modes.thermodynamics(...)`` result, stored as ``thermo_<field>`` attributes
            (its bool, int, float and str fields), or None.
        quench: the frame's minimisation, stored as ``quench_*`` attributes, or None.
    """
    write_frame_arrays(group, frame)
    write_quench(group, quench)
    for name in ("eigenvalues", "frequencies", "participation_ratio"):
        group.create_dataset(name, data=np.asarray(getattr(modes, name), dtype=np.float64))
    dataset(group, "vectors", np.asarray(modes.vectors, dtype=np.float64))
    dataset(group, "displacements", np.asarray(modes.displacements, dtype=np.float64))
    group.attrs["solver"] = str(getattr(modes, "solver", ""))
    for name in ("n_projected", "n_zero", "n_imaginary"):
        if hasattr(modes, name):
            group.attrs[name] = int(getattr(modes, name))
    group.attrs["projected"] = str(modes.projected)
    group.attrs["which"] = str(modes.which)
    group.attrs["zero_tol"] = float(modes.zero_tol)
    group.attrs["scale"] = float(modes.scale)
    if "masses" not in group:
        group.create_dataset("masses", data=np.asarray(modes.masses, dtype=np.float64))
    if thermo is not None:
        group.attrs.update(_thermo_attrs(thermo))


QUENCH_FIELDS = ("max_force", "energy", "iterations", "converged", "method", "fmax")


def write_quench(group, quench) -> None:
    """Store a frame's minimisation (``mdhess.minimize``'s result, or the dict ``read_quench``
    returns) as ``quench_<field>`` attributes; nothing for None."""
    if quench is None:
        return
    for name in QUENCH_FIELDS:
        val = quench[name] if isinstance(quench, dict) else getattr(quench, name)
        group.attrs[f"quench_{name}"] = val if isinstance(val, str) else (bool(val) if name == "converged" else val)


def read_quench(result, slot: int) -> dict | None:
    """The minimisation of the frame in slot ``slot``: {field: value} for ``QUENCH_FIELDS``, or
    None for a frame that was not quenched (and every file written before quenching existed)."""
    a = result.group(slot).attrs
    if "quench_max_force" not in a:
        return None
    kinds = {"iterations": int, "converged": bool, "method": str}
    return {n: _plain(a.get(f"quench_{n}"), kinds.get(n, float)) for n in QUENCH_FIELDS}


def _plain(value, kind):
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return kind(value)


def read_thermo(result, slot: int) -> dict | None:
    """The thermodynamics stored with the frame in slot ``slot`` ({field: value} of the
    ``thermo_*`` attributes, without the prefix), or None when none were computed."""
    a = result.group(slot).attrs
    out = {}
    for key, val in a.items():
        if key.startswith("thermo_"):
            if isinstance(val, bytes):
                val = val.decode()
            elif isinstance(val, np.bool_):
                val = bool(val)
            elif isinstance(val, np.integer):
                val = int(val)
            elif isinstance(val, np.floating):
                val = float(val)
            out[key[len("thermo_"):]] = val
    return out or None


def _thermo_attrs(thermo) -> dict:
    """The plain (bool, int, float, str) fields of a thermodynamics result as ``thermo_*`` attributes."""
    out = {}
    for key, val in vars(thermo).items():
        if isinstance(val, (bool, np.bool_)):
            out[f"thermo_{key}"] = bool(val)
        elif isinstance(val, (int, np.integer)):
            out[f"thermo_{key}"] = int(val)
        elif isinstance(val, (float, np.floating)):
            out[f"thermo_{key}"] = float(val)
        elif isinstance(val, str):
            out[f"thermo_{key}"] = val
    return out


def read_modes_frame(result, slot: int):
    """The normal modes stored in slot ``slot`` of a modes file.

    Args:
        result: an open ``ResultFile`` of kind "modes".
        slot: position in the file (negative counts from the end).

    Returns:
        ``mdhess.NormalModes`` as ``mdhess.normal_modes`` returned it (see ``mdhess.read_modes``).

    Raises:
        InputError: slot out of range, frame not marked complete, unreadable data.
    """
    from .._units import unit_system
    from ..modes._nma import NormalModes

    g = result.group(slot)
    a = dict(g.attrs)
    units = result.json_attr("units")
    return NormalModes(
        eigenvalues=result.array(g, "eigenvalues"),
        vectors=result.array(g, "vectors"),
        masses=result.array(g, "masses"),
        units=unit_system(units) if units else None,
        solver=str(a.get("solver", "")),
        n_projected=int(a.get("n_projected", 0)),
        projected=str(a.get("projected", "")),
        zero_tol=float(a.get("zero_tol", 1e-8)),
        scale=float(a.get("scale", 1.0)),
        positions=result.array(g, "positions"),
        box=result.array(g, "box"),
        which=str(a.get("which", "lowest")),
        info={"source_frame": int(a.get("source_frame", -1)), "quench": read_quench(result, slot)},
    )


def read_spectrum(result, slot: int) -> tuple:
    """The frequencies and participation ratios stored in slot ``slot`` of a modes file.

    Args:
        result: an open ``ResultFile`` of kind "modes".
        slot: position in the file (negative counts from the end).

    Returns:
        (frequencies, participation_ratio): (m,) arrays, None where not stored.
    """
    g = result.group(slot)
    return result.array(g, "frequencies"), result.array(g, "participation_ratio")

"""One frame of a Hessian or modes file: the contents of a ``frames/<slot:06d>`` group, written
and read here and nowhere else (docs/file-formats.md).

Every frame group holds the frame as used: ``positions``, ``box`` (absent in free space),
``species`` and ``masses`` when known. A Hessian frame adds ``hessian``: a dense (3N, 3N) dataset,
or a BSR group (``data``, ``indices``, ``indptr``; attributes ``format``, ``shape``,
``blocksize``). A modes frame adds ``eigenvalues``, ``frequencies``, ``participation_ratio``,
``vectors``, ``displacements``, the solver's attributes and, optionally, ``thermo_*``
attributes. ``ResultRun.write_frame`` adds ``source_frame`` and ``complete``.

The readers take an open ``ResultFile`` (anything with ``group(slot)``, ``array(group, name)``,
``frame_index`` and ``json_attr(name)``) and a slot.
"""

import numpy as np

from .._checks import check_choice
from .._errors import InputError
from ._trajectory import Frame

CHUNK_BYTES = 1 << 20
HESSIAN_COMPRESSIONS = ("auto", "gzip", "none")


def dataset(group, name, data, *, compress=True):
    """Write a chunked dataset (about 1 MiB chunks along the first axis).

    Args:
        group: the h5py group to write into.
        name: dataset name.
        data: array-like; scalars and empty arrays are written unchunked.
        compress: gzip (level 1, byte shuffle) when True.

    Returns:
        The h5py dataset.
    """
    data = np.asarray(data)
    if data.size == 0 or data.ndim == 0:
        return group.create_dataset(name, data=data)
    row = max(1, data.itemsize * int(np.prod(data.shape[1:], dtype=np.int64)))
    rows = int(min(data.shape[0], max(1, CHUNK_BYTES // row)))
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
def write_hessian_frame(group, frame: Frame, H, *, compression: str = "auto") -> None:
    """Fill one frame group of a Hessian file: the frame's arrays and its Hessian.

    Dense Hessians and BSR index arrays are gzip-compressed unless ``compression="none"``; BSR
    block values only with ``compression="gzip"`` (they are dense floats: little gain for much
    time, measured in docs/benchmarks.md, "Command line").

    Args:
        group: the frame's h5py group.
        frame: the frame the Hessian belongs to.
        H: (3N, 3N) array (numpy or JAX) or ``scipy.sparse.bsr_matrix``.
        compression: one of ``HESSIAN_COMPRESSIONS``.

    Raises:
        InputError: unknown compression.
    """
    import scipy.sparse

    check_choice(compression, HESSIAN_COMPRESSIONS, call="write_hessian_frame", name="compression")
    write_frame_arrays(group, frame)
    on = compression != "none"
    if scipy.sparse.issparse(H):
        h = group.create_group("hessian")
        h.attrs["format"] = "bsr"
        h.attrs["shape"] = np.asarray(H.shape, dtype=np.int64)
        h.attrs["blocksize"] = np.asarray(H.blocksize, dtype=np.int64)
        dataset(h, "data", H.data, compress=compression == "gzip")
        dataset(h, "indices", H.indices, compress=on)
        dataset(h, "indptr", H.indptr, compress=on)
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
    if isinstance(h, h5py.Dataset):
        return result.array(g, "hessian")
    if not isinstance(h, h5py.Group):
        raise InputError(f"{result.path!r}: {g.name} has no hessian")
    shape = tuple(int(x) for x in h.attrs["shape"])
    data, indices, indptr = (result.array(h, n) for n in ("data", "indices", "indptr"))
    return scipy.sparse.bsr_matrix((data, indices, indptr), shape=shape)


# -- modes frames ------------------------------------------------------------------------------------
def write_modes_frame(group, frame: Frame, modes, thermo=None) -> None:
    """Fill one frame group of a modes file.

    Args:
        group: the frame's h5py group.
        frame: the frame the modes belong to (masses None: the modes' masses are stored).
        modes: ``mdhess.NormalModes`` of the frame.
        thermo: ``modes.thermodynamics(...)`` result, stored as ``thermo_<field>`` attributes
            (its bool, int, float and str fields), or None.
    """
    write_frame_arrays(group, frame)
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
        info={"source_frame": int(a.get("source_frame", -1))},
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

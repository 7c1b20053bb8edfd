"""Any trajectory mdhess reads -> an H5MD 1.1 file, frame by frame (``mdhess convert``).

The output has the layout ``write_h5md`` writes (particles/all/{position, box, species, mass},
time-dependent positions and box edges), filled one frame at a time: memory holds one frame. It
is written to a temporary file next to the output and renamed when complete, so an interrupted
conversion leaves no half-written output.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import InputError
from ._formats import read_trajectory
from ._hdf5 import replace_output
from ._trajectory import is_reduced_unit, length_factor


@dataclass(frozen=True)
class Converted:
    """What ``convert_trajectory`` wrote.

    Attributes:
        output: the H5MD file.
        source_format: the input's format ("hdf5", "extxyz", ...).
        n_frames, n_atoms: of the output.
        length_unit: the unit recorded (None: none, the input declared none and none was given).
        species: whether per-atom species were written.
        masses: whether masses were written.
    """

    output: str
    source_format: str
    n_frames: int
    n_atoms: int
    length_unit: str | None
    species: bool
    masses: bool


def recorded_unit(traj, length_unit: str | None) -> str | None:
    """The length unit to record: the input's declared unit, or ``length_unit`` where the input
    declares none or only its format's convention (MDTraj, DCD, XTC).

    Raises:
        InputError: ``length_unit`` contradicts a unit the input declares, or is not a length
            (nor a reduced unit).
    """
    if length_unit is not None and length_factor(length_unit) is None and not is_reduced_unit(length_unit):
        raise InputError(f"convert_trajectory(length_unit={length_unit!r}): not a recognised length unit")
    declared = traj.length_unit
    if length_unit is None or declared is None or traj.unit_by_convention:
        return length_unit if length_unit is not None else declared
    same = length_factor(declared) == length_factor(length_unit) and is_reduced_unit(declared) == is_reduced_unit(length_unit)
    if not same:
        raise InputError(
            f"convert_trajectory(length_unit={length_unit!r}) contradicts the unit {declared!r} that {traj.path} declares"
        )
    return declared


def convert_trajectory(
    input, output, *, format=None, group=None, topology=None, species_map=None, species_names=None,
    length_unit=None, frames=None, overwrite=False, on_frame=None,
) -> Converted:  # fmt: skip
    """Write the frames of a trajectory as H5MD 1.1, one frame at a time.

    Args:
        input: any trajectory ``read_trajectory`` reads.
        output: the H5MD file to write.
        format, group, topology, species_map: as for ``read_trajectory``.
        species_names: the species names of the potential the file is meant for (matches atom
            names and symbols to indices), or None.
        length_unit: the unit to record when the input declares none (LAMMPS and XYZ files) or
            only its format's convention: "Angstrom", "nm", "sigma", ...
        frames: source frame indices to write (default: all).
        overwrite: replace an existing output.
        on_frame: called with each source frame index once it is written (progress).

    Returns:
        ``Converted``.

    Raises:
        InputError: unreadable input, species that cannot be told without a map, a unit that
            contradicts the input's, an existing output without ``overwrite=True``.
    """
    import h5py

    from .._version import __version__

    out = Path(os.fspath(output))
    if out.exists() and not overwrite:
        raise InputError(f"output {str(out)!r} exists; pass overwrite=True to replace it")
    if out.is_dir():
        raise InputError(f"output {str(out)!r} is a directory")
    if not out.parent.is_dir():
        raise InputError(f"output folder {str(out.parent)!r} does not exist")
    with read_trajectory(input, format=format, group=group, topology=topology, species_map=species_map) as traj:
        sel = list(range(traj.n_frames)) if frames is None else [int(k) for k in frames]
        if not sel:
            raise InputError("convert_trajectory(frames=...) selects no frames")
        unit = recorded_unit(traj, length_unit)
        species = traj.species_indices(species_names)
        per_frame_species = traj.has_time_dependent_species and species is not None and not traj.species_map
        F, N = len(sel), traj.n_atoms
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            with h5py.File(tmp, "w") as f:
                h = f.create_group("h5md")
                h.attrs["version"] = np.array([1, 1], dtype=np.int32)
                h.create_group("author").attrs["name"] = "mdhess convert"
                c = h.create_group("creator")
                c.attrs["name"], c.attrs["version"] = "mdhess", __version__
                g = f.create_group("particles/all")
                pos = g.create_group("position")
                v = pos.create_dataset("value", shape=(F, N, 3), dtype=np.float64, chunks=(1, N, 3), compression="gzip")
                step = pos.create_dataset("step", data=np.asarray(sel, dtype=np.int64))
                time = pos.create_dataset("time", shape=(F,), dtype=np.float64)
                if unit is not None:
                    v.attrs["unit"] = unit
                f.attrs["mdhess_source"] = os.path.abspath(os.fspath(input))
                f.attrs["mdhess_source_format"] = traj.format
                bx = g.create_group("box")
                bx.attrs["dimension"] = np.int32(3)
                edges = None
                sv = None
                if per_frame_species:
                    sv = g.create_group("species").create_dataset("value", shape=(F, N), dtype=np.int32)
                elif species is not None:
                    g.create_dataset("species", data=np.asarray(species, dtype=np.int32))
                masses = None
                for slot, k in enumerate(sel):
                    fr = traj[k]
                    if slot == 0:
                        periodic = fr.box is not None
                        bx.attrs["boundary"] = np.array([(b"periodic" if periodic else b"none")] * 3, dtype="S8")
                        if periodic:
                            e = bx.create_group("edges")
                            edges = e.create_dataset("value", shape=(F, 3, 3), dtype=np.float64)
                            if unit is not None:
                                edges.attrs["unit"] = unit
                            e["step"] = step
                            e["time"] = time
                        masses = fr.masses
                        if masses is not None:
                            g.create_dataset("mass", data=np.asarray(masses, dtype=np.float64))
                    if (fr.box is not None) != (edges is not None):
                        raise InputError(
                            f"{traj.path}: frame {k} is {'periodic' if fr.box is not None else 'free space'} but frame "
                            f"{sel[0]} is not; H5MD needs one boundary for all frames"
                        )
                    if masses is not None and (fr.masses is None or not np.array_equal(fr.masses, masses)):
                        raise InputError(f"{traj.path}: masses change in frame {k}; H5MD output keeps one set")
                    v[slot] = fr.positions
                    time[slot] = fr.time if fr.time is not None else float(k)
                    if edges is not None:
                        edges[slot] = fr.box
                    if sv is not None:
                        sv[slot] = fr.species
                    if on_frame is not None:
                        on_frame(k)
            replace_output(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Converted(str(out), traj.format, F, N, unit, species is not None, masses is not None)

"""``mdhess convert``: any trajectory mdhess reads -> H5MD 1.1, frame by frame, units recorded.

Also home of the input options that ``hessian`` and ``modes`` share with it (``--input-format``,
``--topology``, ``--species-map``)."""

from pathlib import Path
from typing import Optional

import typer

from ._common import handle_errors

NAME = "convert"
NO_ARGS_IS_HELP = True
HELP = """Convert a trajectory to H5MD 1.1 (the HDF5 standard for MD), frame by frame.

INPUT: HDF5 (H5MD, MDTraj, minimal layout), extended XYZ, LAMMPS dump (text) or data file, or
DCD / XTC / TRR with --topology (MDAnalysis). The output records the length unit: the one the
input declares, else --units (LAMMPS and XYZ files record none: --units lj|metal|real names the
LAMMPS units style they were written in). Species: integer species and LAMMPS types (type t ->
species t-1) are written as they are; atom names and element symbols need --potential (matched to
its species names) or --species-map. The file is written under a temporary name and renamed
when complete.

Example: mdhess convert dump.lammpstrj traj.h5 --units lj
"""

CONVERT_UNITS = ("lj", "metal", "real")


def input_format_option():
    return typer.Option(
        None, "--input-format", metavar="FORMAT",
        help="Input format: hdf5, extxyz, lammps-dump-text, lammps-data, dcd, xtc or trr (default: detected).",
    )  # fmt: skip


def topology_option():
    return typer.Option(
        None, "--topology", metavar="FILE", help="DCD/XTC/TRR input: topology file (PDB, GRO, PSF, LAMMPS data...)."
    )


def species_map_option():
    return typer.Option(
        None, "--species-map", metavar="MAP",
        help="File labels -> the potential's species: 'Ar=0' or '1=A,2=B' (names, symbols or LAMMPS types).",
    )  # fmt: skip


@handle_errors
def command(
    input: Path = typer.Argument(..., metavar="INPUT", help="Trajectory file (any format mdhess reads)."),
    output: Path = typer.Argument(..., metavar="OUTPUT", help="H5MD file to write."),
    units: Optional[str] = typer.Option(
        None, "--units", metavar="STYLE",
        help="lj, metal or real: the LAMMPS units style of an input that records no unit (default: the potential's).",
    ),  # fmt: skip
    potential: Optional[str] = typer.Option(
        None, "--potential", "-p", metavar="NAME", help="Named potential or .toml: its species names and units."
    ),
    frames: Optional[str] = typer.Option(None, "--frames", metavar="SLICE", help="START:STOP:STEP (Python slice) or one index K."),
    input_format: Optional[str] = input_format_option(),
    topology: Optional[Path] = topology_option(),
    species_map: Optional[str] = species_map_option(),
    group: Optional[str] = typer.Option(None, "--group", metavar="NAME", help="H5MD particle group of the input."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    from .._checks import check_choice
    from .._units import UNIT_SYSTEMS
    from ..io import TRAJECTORY_FORMATS, convert_trajectory, read_trajectory
    from ._common import Progress, note, parse_frames

    if units is not None:
        check_choice(units, CONVERT_UNITS, label="--units")
    if input_format is not None:
        check_choice(input_format, TRAJECTORY_FORMATS, label="--input-format")
    names = None
    if potential is not None:
        from ..pair._library import load_spec

        spec = load_spec(potential)
        names = spec.species
        units = units or spec.units
    with read_trajectory(input, format=input_format, group=group, topology=topology) as t:
        sel = parse_frames(frames, t.n_frames)
    progress = Progress(len(sel), quiet=quiet, label="convert")
    try:
        res = convert_trajectory(
            input, output, format=input_format, group=group, topology=topology, species_map=species_map,
            species_names=names, length_unit=None if units is None else UNIT_SYSTEMS[units].length, frames=sel,
            overwrite=overwrite, on_frame=lambda k: progress.update(),
        )  # fmt: skip
    finally:
        progress.close()
    if res.length_unit is None:
        note(f"{input} records no length unit and none was given; {output} records none (pass --units lj|metal|real)")
    if not quiet:
        typer.echo(
            f"wrote {res.output}: H5MD 1.1, {res.n_frames} frames of {res.n_atoms} atoms from {res.source_format}, "
            f"length unit {res.length_unit or '(none)'}, species {'yes' if res.species else 'no'}, "
            f"masses {'yes' if res.masses else 'no'}"
        )

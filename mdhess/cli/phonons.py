"""``mdhess phonons``: phonon band structure and density of states of a periodic structure."""

from pathlib import Path
from typing import Optional

import typer

from ._common import handle_errors
from .convert import input_format_option, species_map_option

NAME = "phonons"
NO_ARGS_IS_HELP = True
HELP = """Phonon band structure and density of states of a periodic structure (exact D(q), no supercell).

STRUCTURE is one frame (--frame) of a trajectory mdhess reads (HDF5: H5MD, MDTraj, minimal
layout; extended XYZ; LAMMPS dump or data), or any single structure ASE reads (CIF, POSCAR, ...).
The cell given is the cell whose phonons are computed (use a primitive cell for the usual
branches). Masses come from the file, else the potential's per-species masses, else 1.
Frequencies: THz for metal and real potentials, omega / 2 pi in reduced units for lj.

Writes OUTPUT (HDF5: bands and DOS, layout in docs/file-formats.md, read it back with
mdhess.io.read_phonons) and a PNG of the bands beside the DOS.

Example: mdhess phonons argon.xyz --potential argon --path GXKGL --mesh 16 -o argon-phonons.h5
"""


@handle_errors
def command(
    structure: Path = typer.Argument(..., metavar="STRUCTURE", help="Periodic structure: trajectory frame or any file ASE reads."),
    potential: str = typer.Option(..., "--potential", "-p", metavar="NAME", help="Named potential (mdhess potentials) or a .toml file."),
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE", help="Output HDF5 file (bands and DOS)."),
    frame: int = typer.Option(0, "--frame", metavar="K", help="Frame of a trajectory (negative counts from the end)."),
    path: Optional[str] = typer.Option(
        None, "--path", metavar="PATH", help="Special points of the cell's lattice (ASE names, e.g. GXKGL; ',' breaks); default: ASE's path."
    ),
    npoints: int = typer.Option(200, "--npoints", metavar="N", help="q-points along the path."),
    mesh: int = typer.Option(16, "--mesh", metavar="M", help="Monkhorst-Pack mesh M x M x M for the DOS."),
    width: Optional[float] = typer.Option(None, "--width", metavar="W", help="DOS Gaussian standard deviation (default: 1% of the top frequency)."),
    png: Optional[Path] = typer.Option(None, "--png", metavar="PNG", help="Plot file (default: OUTPUT with suffix .png)."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Do not write the PNG."),
    group: Optional[str] = typer.Option(None, "--group", metavar="NAME", help="H5MD particle group."),
    length_scale: Optional[float] = typer.Option(None, "--length-scale", metavar="X", help="Multiply input lengths by this."),
    ignore_species: bool = typer.Option(
        False, "--ignore-species", help="Every atom is the potential's species 0, whatever species the file gives."
    ),
    input_format: Optional[str] = input_format_option(),
    species_map: Optional[str] = species_map_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT (and the PNG) if they exist."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary output."),
):
    import time
    import warnings

    import numpy as np

    import mdhess

    from .._errors import InputError
    from ..io import write_phonons
    from ._common import note

    t0 = time.perf_counter()
    png_path = None if no_plot else (png if png is not None else output.with_suffix(".png"))
    if output.exists() and not overwrite:
        raise InputError(f"output {str(output)!r} exists; pass --overwrite to replace it")
    if png_path is not None and png_path.exists() and not overwrite:
        raise InputError(f"plot {str(png_path)!r} exists; pass --overwrite to replace it")
    spec, pot, R, box, species, masses, where = _read_structure(
        structure, potential, frame, group=group, length_scale=length_scale, ignore_species=ignore_species,
        input_format=input_format, species_map=species_map,
    )  # fmt: skip
    if box is None:
        raise InputError(f"{where} has no periodic cell; phonons need a periodic structure")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", mdhess.NotAtEquilibriumWarning)
        ph = mdhess.phonons(pot, R, box, masses=masses, species=species, units=spec.units)
    for w in caught:
        if issubclass(w.category, mdhess.NotAtEquilibriumWarning):
            note(f"warning: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    bands = ph.band_structure(path, npoints)
    dos = ph.dos(mesh, width)
    attrs = {
        "units": spec.units,
        "potential": spec.to_dict(),
        "potential_name": spec.name,
        "source_file": str(structure.resolve()),
        "source_frame": where,
        "max_force": ph.dynmat.max_force,
    }
    write_phonons(output, bands=bands, dos=dos, positions=R, cell=ph.cell, masses=ph.dynmat.masses, attrs=attrs,
                  overwrite=overwrite)  # fmt: skip
    if png_path is not None:
        tmp = png_path.with_name(f".{png_path.name}.tmp")
        try:
            ph.plot(bands=bands, dos=dos, output=tmp)
            tmp.replace(png_path)
        finally:
            if tmp.exists():
                tmp.unlink()
    if not quiet:
        f = bands.frequencies
        typer.echo(
            f"wrote {output}{'' if png_path is None else f' and {png_path}'}: {f.shape[0]} q-points along "
            f"{bands.path or 'the path'}, DOS on a {mesh}^3 mesh; frequencies {np.min(f):.6g} .. {np.max(f):.6g} "
            f"{bands.unit} ({time.perf_counter() - t0:.2f} s)"
        )


def _read_structure(structure, potential, frame, *, group, length_scale, ignore_species, input_format, species_map):
    """(spec, potential, R, box, species, masses, where) of one frame: an mdhess trajectory
    format first, then any single structure ASE reads."""
    from .._errors import InputError
    from ..pair._library import load_spec
    from ._jobs import SourceOptions, TrajectorySource

    spec = load_spec(potential)
    src = SourceOptions(frames=None, group=group, length_scale_override=length_scale, ignore_species=ignore_species,
                        input_format=input_format, species_map=species_map)  # fmt: skip
    try:
        traj = src.open(str(structure))
    except InputError as exc:
        if input_format is not None or not structure.is_file():
            raise
        atoms = _ase_read(structure, frame)
        if atoms is None:
            raise exc from None
        return (spec, *_from_ase(atoms, spec, length_scale, ignore_species), f"{structure} (read by ASE)")
    with traj:
        n = traj.n_frames
        if not -n <= frame < n:
            raise InputError(f"--frame {frame} is out of range ({structure} has {n} frames)")
        tsrc = TrajectorySource(traj, spec, src, fmt="bsr", dtype="float64")
        fr = tsrc.frame(frame % n)
    return spec, tsrc.potential, fr.positions, fr.box, fr.species, fr.masses, f"{structure} frame {frame % n}"


def _ase_read(structure, frame):
    try:
        import ase.io

        return ase.io.read(str(structure), index=frame)
    except Exception:  # noqa: BLE001 - ASE raises many kinds for files it cannot read: the mdhess error is reported
        return None


def _from_ase(atoms, spec, length_scale, ignore_species):
    """(potential, R, box, species, masses) from an ase.Atoms: lengths in A (scaled by
    --length-scale), species by element from the potential's species names, ASE masses (amu)
    for metal and real potentials."""
    import numpy as np

    from .._errors import InputError

    scale = 1.0 if length_scale is None else float(length_scale)
    if spec.units == "lj" and length_scale is None:
        raise InputError(f"{spec.name!r} is in reduced units and the structure in Angstrom: pass --length-scale (sigma per Angstrom)")
    box = np.asarray(atoms.cell[:], float) * scale if all(atoms.pbc) else None
    symbols = atoms.get_chemical_symbols()
    if ignore_species or spec.species_count == 1:
        species = None if spec.species is None else np.zeros(len(atoms), dtype=np.int32)
    else:
        names = list(spec.species or [])
        missing = sorted(set(symbols) - set(names))
        if missing:
            raise InputError(f"elements {missing} are not species of the potential {spec.name!r} ({spec.species_label()})")
        species = np.array([names.index(s) for s in symbols], dtype=np.int32)
    masses = spec.atom_masses(species, len(atoms))
    if masses is None and spec.units != "lj":
        masses = atoms.get_masses()
    return spec.build(), np.asarray(atoms.positions, float) * scale, box, species, masses

"""``mdhess elastic``: athermal elastic constants (with the non-affine relaxation) of every selected
frame of a periodic trajectory, written to HDF5 frame by frame with the same crash-safe, resumable
writer as ``mdhess hessian`` (``run_frames``); the frame layout is ``mdhess.io``'s."""

import os
import time
import warnings
from pathlib import Path
from typing import Optional

import typer

from ._common import handle_errors
from .convert import input_format_option, species_map_option, topology_option

NAME = "elastic"
NO_ARGS_IS_HELP = True
HELP = """Compute the elastic constants of every selected frame of a periodic trajectory.

Per frame: the 6x6 Voigt tensor C (Born + stress terms + the non-affine relaxation -Xi^T H^+ Xi / V),
its parts, the stress and the Hill bulk and shear moduli (docs/elasticity.md). The frames should be
energy minima (inherent structures): use --quench to minimise them first; a frame with forces gets a
notice with its largest force. Each finished frame is stored at once; an interrupted run continues
with --resume. Read it back with mdhess.io.read_elastic(path, frame).

Example: mdhess elastic glass.h5 --potential kob-andersen -o elastic.h5
"""


def run_elastic(
    input, potential, output, *, solver="auto", tol=1e-10, relax=True, displacements=False, source=None, options=None,
    quench=None,
):  # fmt: skip
    """Elastic constants of the selected frames of a trajectory, written to ``output``.

    Args:
        input: the trajectory (a periodic one).
        potential: a named pair potential or a .toml file.
        output: the elastic-constants file to write.
        solver, tol, relax: as for ``mdhess.elastic_constants``.
        displacements: also store the (6, N, 3) non-affine displacement fields.
        source, options, quench: ``SourceOptions``, ``RunOptions``, ``QuenchOptions`` (defaults: none).

    Returns:
        ``JobResult``; its summary has frame, seconds, bulk and shear modulus per computed frame.

    Raises:
        InputError: bad arguments, a non-periodic input, an elastic-network potential; an existing
            output (see ``run_frames``).
    """
    from .._checks import check_choice
    from .._errors import InputError
    from ..io._elastic import write_elastic_frame
    from ..io._results import input_identity
    from ..modes._elasticity import ELASTIC_SOLVERS, elastic_constants
    from ..pair._library import load_spec
    from ._common import note, parse_frames
    from ._jobs import (
        LONG_FRAME_ATOMS,
        Computed,
        JobResult,
        QuenchOptions,
        RunOptions,
        SourceOptions,
        TrajectorySource,
        quench_frame,
        run_frames,
    )  # fmt: skip

    source, options, quench = source or SourceOptions(), options or RunOptions(), quench or QuenchOptions()
    check_choice(solver, ELASTIC_SOLVERS, label="--solver")
    if not (isinstance(tol, float) and 0 < tol < 1):
        raise InputError(f"--tol must be a number in (0, 1); got {tol!r}")
    quench.check()
    spec = load_spec(potential)
    if spec.needs_reference:
        raise InputError(
            f"--potential {spec.name!r} is an elastic network; elastic constants need a pair potential "
            "(a network's bonds are tied to its reference box)"
        )
    t0 = time.perf_counter()
    with source.open(input) as traj:
        if not traj.periodic:
            raise InputError(f"{input}: the trajectory has no periodic box; elastic constants need one (strain and volume)")
        sel = parse_frames(source.frames, traj.n_frames)
        tsrc = TrajectorySource(traj, spec, source, fmt="bsr", dtype="float64")
        settings = {
            **input_identity(input), **source.settings(), "group": traj.group, "layout": traj.layout,
            "potential": spec.to_dict(), "potential_resolved": tsrc.potential.describe(), "length_scale": tsrc.scale,
            "solver": solver, "tol": tol, "relax": bool(relax), "displacements": bool(displacements), **quench.settings(),
        }  # fmt: skip
        attrs = {
            "n_atoms": traj.n_atoms, "potential": spec.to_dict(), "potential_name": spec.name, "units": spec.units,
            "source_file": os.path.abspath(input), "source_layout": traj.layout, "source_group": traj.group or "",
            "length_scale": tsrc.scale, "ignore_species": bool(source.ignore_species), "relax": bool(relax),
            "voigt_order": "xx yy zz yz xz xy",
        }  # fmt: skip
        detail = not options.quiet and (len(sel) == 1 or traj.n_atoms >= LONG_FRAME_ATOMS)

        def compute(todo):
            for slot in todo:
                ts = time.perf_counter()
                fr, q = quench_frame(tsrc.potential, tsrc.frame(sel[slot]), quench, progress=detail)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        res = elastic_constants(tsrc.potential, fr.positions, fr.box, species=fr.species, relax=relax,
                                                solver=solver, tol=tol)  # fmt: skip
                    except (InputError, FloatingPointError) as exc:
                        raise InputError(f"frame {fr.index}: {exc}") from None
                for w in caught:
                    note(f"frame {fr.index}: {w.message}")
                yield Computed(slot, fr, res, ts, q)

        def write(group, computed):
            write_elastic_frame(group, computed.frame, computed.result, displacements=displacements, quench=computed.quench)

        n_computed, summary = run_frames(output, "elastic", settings, sel, options, compute=compute, write=write,
                                         attrs=lambda: attrs)  # fmt: skip
    return JobResult(str(output), len(sel), n_computed, time.perf_counter() - t0, summary)


@handle_errors
def command(
    input: Path = typer.Argument(..., metavar="INPUT", help="Periodic trajectory: HDF5 (H5MD, MDTraj, minimal), extended XYZ, LAMMPS dump/data, DCD/XTC/TRR."),
    potential: str = typer.Option(..., "--potential", "-p", metavar="NAME", help="Named pair potential or a .toml file."),
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE", help="Output HDF5 file."),
    frames: Optional[str] = typer.Option(None, "--frames", metavar="SLICE", help="START:STOP:STEP (Python slice) or one index K."),
    solver: str = typer.Option("auto", "--solver", metavar="SOLVER", help="auto, cg (conjugate gradients on H.v) or direct (sparse factorisation)."),
    tol: float = typer.Option(1e-10, "--tol", metavar="X", help="CG: relative residual per strain component."),
    no_relax: bool = typer.Option(False, "--no-relax", help="Affine (unrelaxed) constants only: no non-affine term."),
    displacements: bool = typer.Option(False, "--displacements", help="Also store the non-affine displacement fields (6, N, 3)."),
    group: Optional[str] = typer.Option(None, "--group", metavar="NAME", help="H5MD particle group (default: the only one, or 'all')."),
    length_scale: Optional[float] = typer.Option(
        None, "--length-scale", metavar="X", help="Multiply lengths by this (default: from the file's unit to the potential's)."
    ),
    quench: bool = typer.Option(False, "--quench", help="Minimise each frame first (FIRE) and store the minimised positions."),
    fmax: float = typer.Option(1e-10, "--fmax", metavar="F", help="--quench: force tolerance, energy/length."),
    ignore_species: bool = typer.Option(
        False, "--ignore-species", help="Every atom is the potential's species 0, whatever species the file gives."
    ),
    input_format: Optional[str] = input_format_option(),
    topology: Optional[Path] = topology_option(),
    species_map: Optional[str] = species_map_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run, skipping finished frames."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    from ._jobs import QuenchOptions, RunOptions, SourceOptions

    res = run_elastic(
        str(input), potential, output, solver=solver, tol=tol, relax=not no_relax, displacements=displacements,
        source=SourceOptions(frames=frames, group=group, length_scale_override=length_scale, ignore_species=ignore_species,
                             input_format=input_format, topology=None if topology is None else str(topology),
                             species_map=species_map),
        options=RunOptions(resume=resume, overwrite=overwrite, quiet=quiet),
        quench=QuenchOptions(enabled=quench, fmax=fmax),
    )  # fmt: skip
    if not quiet:
        typer.echo(f"wrote {res.output}: {res.n_frames} frames ({res.computed} computed) in {res.seconds:.2f} s")

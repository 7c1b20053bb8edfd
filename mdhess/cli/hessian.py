"""``mdhess hessian``: Hessians of every selected frame of a trajectory, written to HDF5."""

from pathlib import Path
from typing import Optional

import typer

from ._common import handle_errors

NAME = "hessian"
NO_ARGS_IS_HELP = True
HELP = """Compute the Hessian of every selected frame of a trajectory.

INPUT is an H5MD 1.1, MDTraj or minimal-layout HDF5 file (detected automatically).
Each finished frame is stored at once; an interrupted run continues with --resume. The output
layout is described in docs/file-formats.md; read it back with mdhess.read_hessian(path, frame).

Example: mdhess hessian traj.h5 --potential kob-andersen --format bsr -o hessians.h5
"""


@handle_errors
def command(
    input: Path = typer.Argument(..., help="Trajectory file (H5MD 1.1, MDTraj HDF5 or minimal layout)."),
    potential: str = typer.Option(..., "--potential", "-p", help="Named potential (mdhess potentials) or a .toml file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output HDF5 file."),
    frames: Optional[str] = typer.Option(None, "--frames", help="START:STOP:STEP (Python slice) or one index K."),
    format: str = typer.Option("dense", "--format", help="dense (3N, 3N) or bsr (3x3 block sparse)."),
    dtype: str = typer.Option("float64", "--dtype", help="float64 or float32."),
    compression: str = typer.Option(
        "auto", "--compression", help="auto (gzip where it pays: dense Hessians, indices), gzip or none."
    ),
    group: Optional[str] = typer.Option(None, "--group", help="H5MD particle group (default: the only one, or 'all')."),
    reference_frame: int = typer.Option(
        0, "--reference-frame", help="Elastic networks: input frame whose pairs within the cutoff become springs."
    ),
    length_scale: Optional[float] = typer.Option(
        None, "--length-scale", help="Multiply lengths by this (default: from the file's unit to the potential's)."
    ),
    ignore_species: bool = typer.Option(
        False, "--ignore-species", help="Every atom is the potential's species 0, whatever species the file gives."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run, skipping finished frames."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    batch_frames: int = typer.Option(
        0, "--batch-frames", help="Frames per batched (vmap) call; 0: automatic, batching only off the CPU."
    ),
):
    from ._jobs import RunOptions, SourceOptions, run_hessian

    res = run_hessian(
        str(input), potential, output, format=format, dtype=dtype, compression=compression, batch_frames=batch_frames,
        source=SourceOptions(frames=frames, group=group, reference_frame=reference_frame, length_scale_override=length_scale,
                             ignore_species=ignore_species),
        options=RunOptions(resume=resume, overwrite=overwrite, quiet=quiet),
    )  # fmt: skip
    if not quiet:
        typer.echo(f"wrote {res.output}: {res.n_frames} frames ({res.computed} computed) in {res.seconds:.2f} s")

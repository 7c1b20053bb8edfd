"""``mdhess hessian``: Hessians of every selected frame of a trajectory, written to HDF5."""

from pathlib import Path
from typing import Optional

import typer

from ._common import distributed_options, handle_errors, join_distributed
from .convert import input_format_option, species_map_option, topology_option

DISTRIBUTED = distributed_options()

NAME = "hessian"
NO_ARGS_IS_HELP = True
HELP = """Compute the Hessian of every selected frame of a trajectory.

INPUT is a trajectory: HDF5 (H5MD 1.1, MDTraj, minimal layout), extended XYZ, a LAMMPS dump
(text) or data file, or DCD / XTC / TRR with --topology; the format is detected (docs/file-formats.md).
Each finished frame is stored at once; an interrupted run continues with --resume. The output
layout is described in docs/file-formats.md; read it back with mdhess.read_hessian(path, frame).

With --quench each frame is first minimised (FIRE) to its inherent structure; the minimised
positions and the final max force are stored with the frame (mdhess.io.read_frame_quench).

Example: mdhess hessian traj.h5 --potential kob-andersen --format bsr -o hessians.h5
"""


@handle_errors
def command(
    input: Path = typer.Argument(..., metavar="INPUT", help="Trajectory: HDF5 (H5MD, MDTraj, minimal), extended XYZ, LAMMPS dump/data, DCD/XTC/TRR."),
    potential: str = typer.Option(
        ..., "--potential", "-p", metavar="NAME", help="Named potential (mdhess potentials) or a .toml file."
    ),
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE", help="Output HDF5 file."),
    frames: Optional[str] = typer.Option(None, "--frames", metavar="SLICE", help="START:STOP:STEP (Python slice) or one index K."),
    format: str = typer.Option("dense", "--format", metavar="FORMAT", help="dense (3N, 3N) or bsr (3x3 block sparse)."),
    dtype: str = typer.Option("float64", "--dtype", metavar="DTYPE", help="float64 or float32."),
    compression: str = typer.Option(
        "auto", "--compression", metavar="KIND", help="auto (gzip where it pays: dense Hessians; BSR arrays raw), gzip or none."
    ),
    group: Optional[str] = typer.Option(
        None, "--group", metavar="NAME", help="H5MD particle group (default: the only one, or 'all')."
    ),
    reference_frame: int = typer.Option(
        0, "--reference-frame", metavar="K", help="Elastic networks: input frame whose pairs within the cutoff become springs."
    ),
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
    processes: int = typer.Option(
        1, "--processes", "-j", metavar="N", help="Compute frames in N worker processes (0: one per CPU core); same results."
    ),
    distributed: bool = DISTRIBUTED[0],
    coordinator: Optional[str] = DISTRIBUTED[1],
    num_processes: Optional[int] = DISTRIBUTED[2],
    process_id: Optional[int] = DISTRIBUTED[3],
    coordinator_timeout: float = DISTRIBUTED[4],
    batch_frames: int = typer.Option(
        0, "--batch-frames", metavar="N", help="Frames per batched (vmap) call; 0: automatic, batching only off the CPU."
    ),
):
    rank, _ = join_distributed(distributed, coordinator, num_processes, process_id, coordinator_timeout)
    from ._jobs import QuenchOptions, RunOptions, SourceOptions, run_hessian

    res = run_hessian(
        str(input), potential, output, format=format, dtype=dtype, compression=compression, batch_frames=batch_frames,
        source=SourceOptions(frames=frames, group=group, reference_frame=reference_frame, length_scale_override=length_scale,
                             ignore_species=ignore_species, input_format=input_format,
                             topology=None if topology is None else str(topology), species_map=species_map),
        options=RunOptions(resume=resume, overwrite=overwrite, quiet=quiet, processes=processes, distributed=distributed),
        quench=QuenchOptions(enabled=quench, fmax=fmax),
    )  # fmt: skip
    if not quiet and rank:
        typer.echo(f"process {rank}: {res.computed} frames computed in {res.seconds:.2f} s (process 0 wrote {res.output})")
    elif not quiet:
        typer.echo(f"wrote {res.output}: {res.n_frames} frames ({res.computed} computed) in {res.seconds:.2f} s")

"""``mdhess modes``: lowest normal modes of every selected frame of a trajectory or Hessian file."""

from pathlib import Path
from typing import Optional

import typer

from ._common import distributed_options, handle_errors, join_distributed
from .convert import input_format_option, species_map_option, topology_option

DISTRIBUTED = distributed_options()

NAME = "modes"
NO_ARGS_IS_HELP = True
HELP = """Compute the lowest normal modes of every selected frame.

Modes are eigenpairs of the mass-weighted Hessian.
INPUT is a trajectory (Hessians computed on the fly; needs --potential) or a Hessian file written
by `mdhess hessian`. Masses come from the input file, else the potential's per-species masses,
else 1. Rigid-body zero modes are projected out (translations; rotations too in free space).

With --quench (trajectory input) each frame is first minimised (FIRE) to its inherent structure;
the minimised positions and the final max force are stored with the frame. --csv writes the
frequencies and participation ratios as CSV (and per-frame thermodynamics beside it, FILE.frames.csv).

Example: mdhess modes hessians.h5 -k 20 --temperature 0.3 --plot dos.png --csv modes.csv -o modes.h5
"""


@handle_errors
def command(
    input: Path = typer.Argument(..., metavar="INPUT", help="Trajectory (HDF5, extended XYZ, LAMMPS dump/data, DCD/XTC/TRR) or Hessian file."),
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE", help="Output HDF5 file."),
    k: int = typer.Option(20, "-k", "--k", metavar="K", help="Number of lowest modes per frame."),
    potential: Optional[str] = typer.Option(
        None, "--potential", "-p", metavar="NAME", help="Named potential or .toml (trajectory input)."
    ),
    units: Optional[str] = typer.Option(None, "--units", metavar="UNITS", help="lj, metal or real (default: the potential's)."),
    solver: str = typer.Option(
        "auto", "--solver", metavar="SOLVER", help="auto, dense, shift-invert, lobpcg or jax-lobpcg (see mdhess.normal_modes)."
    ),
    precision: str = typer.Option(
        "float64", "--precision", metavar="P",
        help="float64, or mixed (--solver jax-lobpcg: float32 products, then float64 to the same accuracy).",
    ),
    temperature: Optional[float] = typer.Option(
        None, "--temperature", "-T", metavar="T", help="Harmonic thermodynamics at this temperature (K; reduced units for lj)."
    ),
    hbar: Optional[float] = typer.Option(None, "--hbar", metavar="HBAR", help="hbar in reduced units (lj thermodynamics only)."),
    classical: bool = typer.Option(False, "--classical", help="Classical instead of quantum oscillators."),
    plot: Optional[Path] = typer.Option(
        None, "--plot", metavar="PNG", help="Write the Gaussian-broadened density of states (each frame and the average)."
    ),
    width: Optional[float] = typer.Option(
        None, "--width", metavar="W", help="--plot: Gaussian standard deviation, frequency units (default: 2% of the range)."
    ),
    csv: Optional[Path] = typer.Option(
        None, "--csv", metavar="CSV", help="Also write frame, mode, frequency, participation ratio as CSV (and CSV.frames.csv)."
    ),
    quench: bool = typer.Option(False, "--quench", help="Minimise each frame first (FIRE; trajectory input)."),
    fmax: float = typer.Option(1e-10, "--fmax", metavar="F", help="--quench: force tolerance, energy/length."),
    frames: Optional[str] = typer.Option(None, "--frames", metavar="SLICE", help="START:STOP:STEP (Python slice) or one index K."),
    group: Optional[str] = typer.Option(None, "--group", metavar="NAME", help="H5MD particle group."),
    reference_frame: int = typer.Option(0, "--reference-frame", metavar="K", help="Elastic networks: reference input frame."),
    length_scale: Optional[float] = typer.Option(None, "--length-scale", metavar="X", help="Multiply input lengths by this."),
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
):
    rank, _ = join_distributed(distributed, coordinator, num_processes, process_id, coordinator_timeout)
    from ._jobs import QuenchOptions, RunOptions, SourceOptions, ThermoOptions, run_modes

    res = run_modes(
        str(input), output, k=k, potential=potential, units=units, solver=solver, plot=plot, csv=csv, width=width,
        precision=precision,
        thermo=ThermoOptions(temperature=temperature, hbar=hbar, classical=classical),
        source=SourceOptions(frames=frames, group=group, reference_frame=reference_frame, length_scale_override=length_scale,
                             ignore_species=ignore_species, input_format=input_format,
                             topology=None if topology is None else str(topology), species_map=species_map),
        options=RunOptions(resume=resume, overwrite=overwrite, quiet=quiet, processes=processes, distributed=distributed),
        quench=QuenchOptions(enabled=quench, fmax=fmax),
    )  # fmt: skip
    if temperature is not None and not rank:
        _partial_thermo_notice(res.output, k, temperature, hbar, classical)
    if not quiet and rank:
        typer.echo(f"process {rank}: {res.computed} frames computed in {res.seconds:.2f} s (process 0 wrote {res.output})")
    elif not quiet:
        typer.echo(f"wrote {res.output}: {res.n_frames} frames ({res.computed} computed) in {res.seconds:.2f} s")
        if plot is not None and not rank:
            typer.echo(f"wrote {plot}")
        for path in res.csv_files:
            typer.echo(f"wrote {path}")


def _partial_thermo_notice(output, k: int, temperature: float, hbar, classical: bool) -> None:
    """One notice when the stored thermodynamics sum over only some of the modes (k < 3N)."""
    from ..io import read_modes
    from ._common import note

    nm = read_modes(output, 0)
    n_dof = 3 * nm.n_atoms
    if nm.n_modes >= n_dof:
        return
    used = nm.thermodynamics(temperature, quantum=not classical, hbar=hbar).n_modes_used
    note(
        f"thermodynamics from {used} of {n_dof - nm.n_projected} vibrational modes (-k {k}): a partial sum; "
        f"use -k {n_dof} (all modes) for the full harmonic value"
    )

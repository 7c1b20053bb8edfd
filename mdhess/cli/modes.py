"""``mdhess modes``: lowest normal modes of every selected frame of a trajectory or Hessian file."""

from pathlib import Path
from typing import Optional

import typer

from ._common import handle_errors

NAME = "modes"
NO_ARGS_IS_HELP = True
HELP = """Compute the lowest normal modes of every selected frame.

Modes are eigenpairs of the mass-weighted Hessian.
INPUT is a trajectory (Hessians computed on the fly; needs --potential) or a Hessian file written
by `mdhess hessian`. Masses come from the input file, else the potential's per-species masses,
else 1. Rigid-body zero modes are projected out (translations; rotations too in free space).

Example: mdhess modes hessians.h5 -k 20 --temperature 0.3 --plot dos.png -o modes.h5
"""


@handle_errors
def command(
    input: Path = typer.Argument(..., help="Trajectory (H5MD, MDTraj, minimal) or Hessian file."),
    output: Path = typer.Option(..., "--output", "-o", help="Output HDF5 file."),
    k: int = typer.Option(20, "-k", "--k", help="Number of lowest modes per frame."),
    potential: Optional[str] = typer.Option(None, "--potential", "-p", help="Named potential or .toml (trajectory input)."),
    units: Optional[str] = typer.Option(None, "--units", help="lj, metal or real (default: the potential's)."),
    solver: str = typer.Option(
        "auto", "--solver", help="auto, dense, shift-invert or lobpcg (see mdhess.normal_modes)."
    ),
    temperature: Optional[float] = typer.Option(
        None, "--temperature", "-T", help="Harmonic thermodynamics at this temperature (K; reduced units for lj)."
    ),
    hbar: Optional[float] = typer.Option(None, "--hbar", help="hbar in reduced units (lj thermodynamics only)."),
    classical: bool = typer.Option(False, "--classical", help="Classical instead of quantum oscillators."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the density of states of the modes found to this PNG."),
    frames: Optional[str] = typer.Option(None, "--frames", help="START:STOP:STEP (Python slice) or one index K."),
    group: Optional[str] = typer.Option(None, "--group", help="H5MD particle group."),
    reference_frame: int = typer.Option(0, "--reference-frame", help="Elastic networks: reference input frame."),
    length_scale: Optional[float] = typer.Option(None, "--length-scale", help="Multiply input lengths by this."),
    ignore_species: bool = typer.Option(
        False, "--ignore-species", help="Every atom is the potential's species 0, whatever species the file gives."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run, skipping finished frames."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    from ._jobs import RunOptions, SourceOptions, ThermoOptions, run_modes

    res = run_modes(
        str(input), output, k=k, potential=potential, units=units, solver=solver, plot=plot,
        thermo=ThermoOptions(temperature=temperature, hbar=hbar, classical=classical),
        source=SourceOptions(frames=frames, group=group, reference_frame=reference_frame, length_scale_override=length_scale,
                             ignore_species=ignore_species),
        options=RunOptions(resume=resume, overwrite=overwrite, quiet=quiet),
    )  # fmt: skip
    if temperature is not None:
        _partial_thermo_notice(res.output, k, temperature, hbar, classical)
    if not quiet:
        typer.echo(f"wrote {res.output}: {res.n_frames} frames ({res.computed} computed) in {res.seconds:.2f} s")
        if plot is not None:
            typer.echo(f"wrote {plot}")


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

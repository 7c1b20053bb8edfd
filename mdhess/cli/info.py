"""``mdhess info``: summarise a trajectory, Hessian or modes file."""

from pathlib import Path

import typer

from ._common import file_size, handle_errors

NAME = "info"
NO_ARGS_IS_HELP = True
HELP = """Summarise a trajectory, Hessian or modes file (or an interrupted run's OUTPUT.partial folder).

Trajectories: layout, frames, atoms, box, species, units. Hessian and modes files: the potential,
format, frames and their completion marks, the source trajectory."""


def _trajectory(path):
    import numpy as np

    from ..io import read_trajectory

    with read_trajectory(path) as t:
        grp = f", particle group {t.group!r}" if t.group else ""
        typer.echo(f"{path}: trajectory ({t.layout}{grp}), {t.n_frames} frames of {t.n_atoms} atoms, {file_size(path)}")
        typer.echo(f"  length unit: {t.length_unit or '(none declared)'}")
        fr = t[0]
        if fr.box is None:
            typer.echo("  box: none (free space)")
        else:
            b = fr.box
            kind = "orthorhombic" if np.count_nonzero(b - np.diag(np.diag(b))) == 0 else "triclinic"
            typer.echo(f"  box (frame 0): {kind}, rows {np.round(b, 6).tolist()}")
        if fr.species is not None:
            u, c = np.unique(fr.species, return_counts=True)
            typer.echo("  species: " + ", ".join(f"{a}: {n}" for a, n in zip(u.tolist(), c.tolist())))
        elif t.atom_names is not None:
            u, c = np.unique(t.atom_names, return_counts=True)
            typer.echo("  atom names: " + ", ".join(f"{a}: {n}" for a, n in zip(u.tolist(), c.tolist())))
        typer.echo(f"  masses: {'yes' if fr.masses is not None else 'no'}")


def _result(path):
    import numpy as np

    from ..io import ResultFile
    from ..io._frames import read_spectrum

    with ResultFile(path) as r:
        a = r.attrs
        pot = r.json_attr("potential", {}) or {}
        typer.echo(
            f"{path}: mdhess {r.kind} file (format version {a.get('mdhess_file_version')}, "
            f"mdhess {a.get('mdhess_version')}), {r.n_frames} frames, all complete: {bool(np.all(r.complete))}, "
            f"{file_size(path)}"
        )
        typer.echo(f"  source: {a.get('source_file')} (frames {r.frame_index.tolist()[:12]}{' ...' if r.n_frames > 12 else ''})")
        if pot:
            typer.echo(f"  potential: {pot.get('name')} ({pot.get('kernel')}, units {pot.get('units')})")
        if r.kind == "hessian":
            typer.echo(f"  atoms: {a.get('n_atoms')}, format: {a.get('format')}, dtype: {a.get('dtype')}")
            H = r.hessian(0)
            if hasattr(H, "nnz"):
                typer.echo(f"  frame 0: {H.shape}, {H.data.shape[0]} stored 3x3 blocks")
            else:
                typer.echo(f"  frame 0: {H.shape} dense")
        else:
            typer.echo(f"  units: {r.json_attr('units')}, modes per frame: {a.get('k')}, source kind: {a.get('source_kind')}")
            f, _ = read_spectrum(r, 0)
            if f is not None:
                typer.echo(f"  frame 0 lowest frequencies: {np.round(f[:6], 6).tolist()} ({a.get('frequency_unit', '')})")


def _partial(path: Path, run):
    typer.echo(f"{path}: interrupted mdhess {run.kind} run, {run.finished} of {run.n_frames} frames finished")
    typer.echo(f"  input: {run.settings.get('input')}; continue with the same command and --resume")


@handle_errors
def command(file: Path = typer.Argument(..., help="An HDF5 trajectory, Hessian or modes file.")):
    from .._errors import InputError
    from ..io._readers import read_file_kind, read_partial_run

    if file.is_dir():
        run = read_partial_run(file)
        if run is not None:
            return _partial(file, run)
        raise InputError(f"{str(file)!r} is a directory")
    partial = file.with_name(file.name + ".partial")
    if not file.exists() and partial.is_dir():  # an output whose run was interrupted
        run = read_partial_run(partial)
        if run is not None:
            return _partial(partial, run)
    if read_file_kind(file, what="file") is None:
        _trajectory(file)
    else:
        _result(file)

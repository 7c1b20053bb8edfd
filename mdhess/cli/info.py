"""``mdhess info``: summarise a trajectory, Hessian or modes file."""

from pathlib import Path

import typer

from ._common import file_size, handle_errors

NAME = "info"
NO_ARGS_IS_HELP = True
HELP = """Summarise a trajectory, Hessian or modes file (or an interrupted run's OUTPUT.partial folder).

Trajectories: layout, frames, atoms, box, species, units. Hessian and modes files: the potential,
format, frames and their completion marks, the source trajectory; modes files also the
thermodynamics of each frame (and how many modes they summed), quenched files the minimisation."""


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
        elif r.kind == "elastic":
            _elastic(r)
        else:
            typer.echo(f"  units: {r.json_attr('units')}, modes per frame: {a.get('k')}, source kind: {a.get('source_kind')}")
            f, _ = read_spectrum(r, 0)
            if f is not None:
                typer.echo(f"  frame 0 lowest frequencies: {np.round(f[:6], 6).tolist()} ({a.get('frequency_unit', '')})")
            _thermo(r)
        _quench(r)


INFO_ROWS = 12  # frames listed in the per-frame tables (then "...")


def _elastic(r) -> None:
    """Elastic-constants files: per frame the Hill bulk and shear moduli and the largest force."""
    from ..io._elastic import read_elastic_frame

    a = r.attrs
    typer.echo(f"  atoms: {a.get('n_atoms')}, units: {a.get('units')}, relaxed: {bool(a.get('relax', True))}, Voigt order {a.get('voigt_order')}")
    typer.echo(f"  {'frame':>6} {'bulk (Hill)':>12} {'shear (Hill)':>12} {'C11':>10} {'C44':>10} {'max force':>10} solver")
    for s in range(min(r.n_frames, INFO_ROWS)):
        e = read_elastic_frame(r, s)
        K, G = e.moduli("hill")
        typer.echo(f"  {int(r.frame_index[s]):6d} {K:12.6g} {G:12.6g} {e.C[0, 0]:10.5g} {e.C[3, 3]:10.5g} {e.max_force:10.3g} {e.solver}")
    if r.n_frames > INFO_ROWS:
        typer.echo(f"  ... ({r.n_frames - INFO_ROWS} more frames; mdhess.io.read_elastic(path, frame))")


def _thermo(r) -> None:
    """The thermodynamics stored with each frame, and how many modes they summed."""
    from ..io._frames import read_thermo

    rows = [(int(r.frame_index[s]), read_thermo(r, s)) for s in range(r.n_frames)]
    rows = [(k, t) for k, t in rows if t]
    if not rows:
        return
    t0 = rows[0][1]
    n_dof = 3 * int(r.attrs.get("n_atoms", 0) or 0)
    kind = "quantum" if t0.get("quantum", True) else "classical"
    typer.echo(
        f"  thermodynamics (harmonic, {kind}, T = {t0.get('temperature')}, energies in {t0.get('units') or 'the potential units'};"
        f" sums over the modes found: {r.attrs.get('k')} per frame of {n_dof}):"
    )
    typer.echo(f"  {'frame':>6} {'free energy':>14} {'internal energy':>16} {'entropy':>14} {'heat capacity':>14} {'ZPE':>12} modes used")
    for k, t in rows[:INFO_ROWS]:
        typer.echo(
            f"  {k:6d} {t.get('free_energy', float('nan')):14.6g} {t.get('internal_energy', float('nan')):16.6g} "
            f"{t.get('entropy', float('nan')):14.6g} {t.get('heat_capacity', float('nan')):14.6g} {t.get('zpe', float('nan')):12.6g} "
            f"{t.get('n_modes_used')} (skipped: {t.get('n_zero_skipped')} zero, {t.get('n_imaginary_skipped')} imaginary)"
        )
    if len(rows) > INFO_ROWS:
        typer.echo(f"  ... ({len(rows) - INFO_ROWS} more frames; all: mdhess modes ... --csv FILE)")


def _quench(r) -> None:
    """How the frames were minimised (``--quench``)."""
    from ..io._frames import read_quench

    q = [read_quench(r, s) for s in range(r.n_frames)]
    done = [x for x in q if x is not None]
    if not done:
        return
    fm = max(x["max_force"] for x in done)
    conv = sum(bool(x["converged"]) for x in done)
    typer.echo(
        f"  quenched ({done[0]['method']}, --fmax {done[0]['fmax']:g}): {len(done)} of {r.n_frames} frames, "
        f"{conv} converged, largest final max force {fm:.3g}, "
        f"{min(x['iterations'] for x in done)}-{max(x['iterations'] for x in done)} steps"
    )


def _partial(path: Path, run):
    typer.echo(f"{path}: interrupted mdhess {run.kind} run, {run.finished} of {run.n_frames} frames finished")
    typer.echo(f"  input: {run.settings.get('input')}; continue with the same command and --resume")


@handle_errors
def command(file: Path = typer.Argument(..., metavar="FILE", help="An HDF5 trajectory, Hessian or modes file.")):
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

"""``mdhess potentials``: the named potentials with formula, units and reference."""

from typing import Optional

import typer

from ._common import handle_errors

NAME = "potentials"
HELP = """List the named potentials (TOML files shipped with mdhess), or show one in full.

Use a name with --potential, or in Python: mdhess.load_potential(name).
"""


def _fmt(v) -> str:
    import numpy as np

    a = np.asarray(v)
    return f"{float(a):g}" if a.ndim == 0 else str(np.round(a, 12).tolist())


@handle_errors
def command(name: Optional[str] = typer.Argument(None, help="Show this potential (a name or a .toml file) in full.")):
    from ..pair._library import list_potentials, load_spec

    if name is None:
        for s in list_potentials():
            typer.echo(f"{s.name}  [{s.kernel}, units {s.units}]")
            if s.description:
                typer.echo(f"    {s.description}")
            typer.echo(f"    phi(r) = {s.formula}")
            typer.echo(f"    reference: {s.reference}")
        return
    s = load_spec(name)
    typer.echo(f"name:        {s.name}")
    typer.echo(f"file:        {s.path}")
    typer.echo(f"description: {s.description}")
    typer.echo(f"kernel:      {s.kernel}: phi(r) = {s.formula}")
    typer.echo(f"units:       {s.units}")
    typer.echo(f"reference:   {s.reference}")
    if s.species:
        typer.echo(f"species:     {', '.join(f'{i} = {n}' for i, n in enumerate(s.species))}")
    if s.masses:
        typer.echo(f"masses:      {', '.join(f'{m:g}' for m in s.masses)}")
    for k, v in s.parameters.items():
        typer.echo(f"  {k} = {_fmt(v)}")
    if s.cutoff is not None:
        typer.echo(f"cutoff:      {_fmt(s.cutoff)} ({s.treatment})")
    if s.switch is not None:
        typer.echo(f"switch on:   {_fmt(s.switch)}")

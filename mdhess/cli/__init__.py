"""The ``mdhess`` command line: Hessians and normal modes from HDF5 trajectories.

A thin typer layer over library calls; one module per subcommand, heavy imports (h5py, jax
work, scipy, matplotlib) inside the commands so that ``mdhess --help`` starts fast. Bad input
exits with code 2 and one line on stderr, never a traceback; a closed stdout (``| head``) ends
the command quietly with code 0.
"""

import sys

import typer

from . import convert, demo, elastic, hessian, info, modes, phonons, potentials
from ._common import Command, Group, stdout_gone

app = typer.Typer(
    name="mdhess",
    help="Exact Hessians and normal modes of pair potentials from HDF5 trajectories (H5MD, MDTraj).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=Group,
)
for _mod in (hessian, modes, elastic, convert, phonons, potentials, info, demo):
    app.command(_mod.NAME, help=_mod.HELP, no_args_is_help=getattr(_mod, "NO_ARGS_IS_HELP", False), cls=Command)(
        _mod.command
    )


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"mdhess {__version__}")
        raise typer.Exit(0)


@app.callback()
def _app(
    version: bool = typer.Option(
        False, "--version", help="Print the mdhess version and exit.", is_eager=True, callback=_print_version
    ),
):
    """Exact Hessians and normal modes of pair potentials from HDF5 trajectories (H5MD, MDTraj)."""


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``mdhess``): usage errors are one line on stderr with exit code 2."""
    try:
        rv = app(args=argv, prog_name="mdhess", standalone_mode=False)
    except BrokenPipeError:  # stdout closed early (mdhess --help | head -1): stop quietly, like head's input
        stdout_gone()
        sys.exit(0)
    except Exception as exc:  # click's ClickException (UsageError, BadParameter, FileError, ...)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            msg = " ".join(exc.format_message().split())
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "mdhess"
            typer.echo(f"{where}: error: {msg} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            typer.echo("mdhess: aborted", err=True)
            sys.exit(1)
        raise
    sys.exit(rv if isinstance(rv, int) else 0)

"""The ``mdhess`` command line: Hessians and normal modes from HDF5 trajectories.

A thin typer layer over library calls; one module per subcommand, heavy imports (h5py, jax
work, scipy, matplotlib) inside the commands so that ``mdhess --help`` starts fast. Bad input
exits with code 2 and one line on stderr, never a traceback; a closed stdout (``| head``) ends
the command quietly with code 0.
"""

import os
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


def console() -> None:
    """The ``mdhess`` program (``python -m mdhess.cli`` too): ``main``, then a quick exit.

    A finished command leaves the process by ``os._exit`` after the ``atexit`` handlers have run
    and stdout and stderr are flushed, skipping the interpreter's teardown of every module (JAX,
    XLA, scipy: ~0.4 s of a cold ``mdhess hessian``; docs/cli.md, Start-up). Only when nothing
    could be lost that way: no other non-daemon thread alive and no HDF5 file left open (the
    HDF5 library flushes open files in its own C exit handler, which ``os._exit`` skips);
    otherwise the normal exit. Errors that escape ``main`` exit as usual, traceback and all.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    quick_exit(code)


def quick_exit(code) -> None:
    """Exit with ``code`` (as ``sys.exit`` takes it) without the interpreter's teardown when
    that is safe (see ``console``); else ``sys.exit(code)``."""
    import atexit
    import threading

    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if others or _open_hdf5_files():
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()  # logging.shutdown, JAX's and tqdm's handlers, ...
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            if stream is sys.stdout:
                stdout_gone()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(status)


def _open_hdf5_files() -> int:
    """How many HDF5 files this process holds open (0 when h5py was never imported)."""
    h5py = sys.modules.get("h5py")
    if h5py is None:
        return 0
    try:
        return int(h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE))
    except Exception:  # unknown: assume open, exit the normal way
        return 1

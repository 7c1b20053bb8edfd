"""Shared CLI plumbing: one-line errors with exit code 2, progress on stderr, frame selections,
bundled data. Only the standard library and typer are imported here (``mdhess --help`` is fast)."""

import errno
import functools
import os
import re
import sys
import time
from pathlib import Path

import typer
import typer.core

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# How library messages name the arguments that command-line flags set, and the flags' spelling
# ("group='A'" -> "--group 'A'"): the CLI's messages name the flags.
FLAG_OF_ARGUMENT = {"group=": "--group ", "overwrite=True": "--overwrite", "resume=True": "--resume",
                    "species_map=": "--species-map ", "topology=": "--topology "}  # fmt: skip
_ARGUMENT = re.compile(
    r"(?<!\S)(" + "|".join(re.escape(a) + ("(?!=)" if a.endswith("=") else r"(?!\w)") for a in FLAG_OF_ARGUMENT) + ")"
)


def in_cli_terms(msg: str) -> str:
    """A library message with the arguments in ``FLAG_OF_ARGUMENT`` named as flags.

    ``overwrite=True`` becomes ``--overwrite``, ``group='A'`` becomes ``--group 'A'``; only a
    whole word is replaced (not ``f(group=...)`` or a path).

    Args:
        msg: the message.

    Returns:
        The message in command-line terms.
    """
    return _ARGUMENT.sub(lambda m: FLAG_OF_ARGUMENT[m.group(1)], msg)


def note(msg: str) -> None:
    """A one-line notice on stderr (library arguments named as flags)."""
    typer.echo(f"mdhess: {in_cli_terms(msg)}", err=True)


def fail(msg: str, code: int = EXIT_BAD_INPUT):
    """Print a one-line error on stderr (library arguments named as flags) and exit (2 for bad input)."""
    line = " ".join(in_cli_terms(str(msg)).split())
    typer.echo(f"mdhess: error: {line}", err=True)
    raise typer.Exit(code)


def handle_errors(fn):
    """Turn mdhess's input errors into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .._errors import InputError, MemoryPlanError, NonFiniteError

        try:
            return fn(*args, **kwargs)
        except (InputError, NonFiniteError, MemoryPlanError) as exc:
            fail(str(exc))
        except BrokenPipeError:  # stdout closed early (mdhess potentials | head): stop quietly
            stdout_gone()
            raise typer.Exit(0) from None
        except OSError as exc:  # e.g. an output folder without write permission, a full disk
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                fail(
                    f"no space left writing {exc.filename or 'the output'}; finished frames are kept: "
                    "free some space, then rerun with --resume"
                )
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            fail(f"{exc.strerror or exc}{where}")
        except KeyboardInterrupt:
            typer.echo("mdhess: interrupted; finished frames are kept, rerun with --resume to continue", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def stdout_gone() -> None:
    """After a BrokenPipeError: point stdout at /dev/null, so that nothing more (not even the
    interpreter's final flush) fails or prints "Broken pipe"."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in tests)
        pass


def parse_frames(text: str | None, n_frames: int) -> list[int]:
    """Source frame indices selected by "START:STOP:STEP" (Python slice rules) or "K"."""
    from .._errors import InputError

    if text is None or text.strip() in ("", ":", "::"):
        return list(range(n_frames))
    parts = text.split(":")
    try:
        if len(parts) == 1:
            k = int(parts[0])
            if not -n_frames <= k < n_frames:
                raise InputError(f"--frames {text!r}: frame {k} is out of range (the input has {n_frames} frames)")
            return [k % n_frames]
        if len(parts) > 3:
            raise ValueError
        start, stop, step = [int(p) if p.strip() else None for p in parts + [""] * (3 - len(parts))]
    except InputError:  # the range check above (an InputError is a ValueError): not a syntax error
        raise
    except ValueError:
        raise InputError(f"--frames must be START:STOP:STEP or K (integers; any part may be empty); got {text!r}") from None
    if step == 0:
        raise InputError(f"--frames step must not be 0; got {text!r}")
    sel = list(range(n_frames))[slice(start, stop, step)]
    if not sel:
        raise InputError(f"--frames {text!r} selects no frames (the input has {n_frames} frames)")
    return sel


class Progress:
    """Frames done / total with rate and ETA on stderr: a tqdm bar on a terminal, plain lines
    otherwise, nothing with quiet=True."""

    def __init__(self, total: int, initial: int = 0, *, quiet: bool = False, label: str = "frames"):
        self.total, self.done, self.quiet, self.label = total, initial, quiet, label
        self.start, self.initial = time.perf_counter(), initial
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="frame", desc=label, file=sys.stderr, dynamic_ncols=True)

    def update(self, info: str = "") -> None:
        self.done += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(info, refresh=False)
            self.bar.update(1)
            return
        el = time.perf_counter() - self.start
        n = self.done - self.initial
        rate = n / el if el > 0 else float("inf")
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        extra = f", {info}" if info else ""
        typer.echo(f"{self.label}: {self.done}/{self.total} ({rate:.3g} frames/s, ETA {eta:.0f} s{extra})", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _with_metavars(params):
    """Help text with real metavars: nothing after a flag (typer shows ``<bool>``), the option's
    name in capitals where a command gave no metavar (typer shows ``<str>``)."""
    for p in params:
        kind = getattr(p, "param_type_name", "")
        if p.metavar is None and kind == "option":
            p.metavar = "" if getattr(p, "is_flag", False) else (p.name or "value").upper()
        elif p.metavar is None and kind == "argument":
            p.metavar = (p.name or "arg").upper()
    return params


class Command(typer.core.TyperCommand):
    """A typer command whose help shows real metavars and ``INPUT`` (not ``{input}``) in the usage line."""

    def get_params(self, ctx):
        return _with_metavars(super().get_params(ctx))

    def collect_usage_pieces(self, ctx):
        return [p[1:-1] if len(p) > 2 and p[0] == "{" and p[-1] == "}" else p for p in super().collect_usage_pieces(ctx)]


class Group(typer.core.TyperGroup):
    """The ``mdhess`` group: real metavars as in ``Command``."""

    def get_params(self, ctx):
        return _with_metavars(super().get_params(ctx))


def bundled_data(name: str) -> Path:
    """A file shipped with mdhess: in the installed package (mdhess/_data) or the repository's
    top-level data/ (editable installs and source checkouts)."""
    from .._errors import InputError

    pkg = Path(__file__).resolve().parents[1]
    for d in (pkg / "_data", pkg.parent / "data"):
        if (d / name).is_file():
            return d / name
    raise InputError(f"bundled data file {name!r} not found in {pkg / '_data'} or {pkg.parent / 'data'}")


def file_size(path) -> str:
    n = os.path.getsize(path)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


# -- --distributed ---------------------------------------------------------------------------------
def distributed_options():
    """The options of ``--distributed`` (hessian, modes), as typer parameter defaults."""
    return (
        typer.Option(
            False, "--distributed", help="Split the frames across the processes of JAX's distributed runtime (each "
            "runs this same command; Slurm and Open MPI are detected, or give --coordinator, --num-processes, "
            "--process-id); process 0 writes the one output file, on a file system every process sees.",
        ),
        typer.Option(None, "--coordinator", metavar="HOST:PORT", help="--distributed: the coordinator's address (process 0 serves it)."),
        typer.Option(None, "--num-processes", metavar="N", help="--distributed: how many processes take part."),
        typer.Option(None, "--process-id", metavar="I", help="--distributed: this process's rank, 0..N-1."),
        typer.Option(300.0, "--coordinator-timeout", metavar="S", help="--distributed: seconds to wait for the coordinator and the other processes."),
    )  # fmt: skip


def join_distributed(distributed: bool, coordinator, num_processes, process_id, timeout) -> tuple[int, int]:
    """``--distributed``: join JAX's distributed runtime (``mdhess.distributed.initialize``) before
    any JAX work; returns (rank, process count), (0, 1) without ``--distributed``.

    Raises:
        InputError: distributed options without ``--distributed``, bad values, or no coordinator
            answering within the timeout (never a hang).
    """
    from .._errors import InputError

    given = [name for name, v in (("--coordinator", coordinator), ("--num-processes", num_processes),
                                  ("--process-id", process_id)) if v is not None]  # fmt: skip
    if not distributed:
        if given:
            raise InputError(f"{', '.join(given)} need --distributed")
        return 0, 1
    from .. import distributed as dist

    try:
        info = dist.initialize(coordinator, num_processes, process_id, timeout=timeout)
    except dist.CoordinatorError as exc:
        raise InputError(f"--distributed: {exc}") from None
    return info["process_index"], info["process_count"]

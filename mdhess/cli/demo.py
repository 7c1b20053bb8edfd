"""``mdhess demo``: the main job on bundled data, end to end, in well under a minute."""

from pathlib import Path
from typing import Optional

import typer

from ._common import file_size, handle_errors

NAME = "demo"
HELP = """Run the main job on bundled data: Hessians and lowest modes of a Kob-Andersen glass.

The bundled trajectory has 10 frames of a 500-atom glass. The demo computes block-sparse
Hessians of every frame, then the lowest normal modes, and prints a short summary. The files go
to --output-dir DIR when given (kept); otherwise to a temporary folder that is removed at the end.
Equivalent to

  mdhess hessian ka500.h5 --potential kob-andersen --format bsr -o ka500_hessians.h5
  mdhess modes ka500_hessians.h5 -k 10 --solver shift-invert -o ka500_modes.h5
"""


@handle_errors
def command(
    out_dir: Optional[Path] = typer.Option(
        None, "--output-dir", "--out-dir", metavar="DIR",
        help="Keep the output files in this folder (default: a temporary folder, removed at the end).",
    ),
    k: int = typer.Option(10, "-k", "--k", metavar="K", help="Number of lowest modes per frame."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    import shutil
    import tempfile
    import time

    from ._common import bundled_data

    t0 = time.perf_counter()
    data = bundled_data("ka500.h5")
    if out_dir is None:
        out = Path(tempfile.mkdtemp(prefix="mdhess-demo-"))
    else:
        out = out_dir
        out.mkdir(parents=True, exist_ok=True)
    try:
        _run(data, out, k, quiet, t0, keep=out_dir is not None)
    finally:
        if out_dir is None:
            shutil.rmtree(out, ignore_errors=True)
    if out_dir is None:
        typer.echo("  (the files were in a temporary folder, now removed; keep them with --output-dir DIR)")


def _run(data, out: Path, k: int, quiet: bool, t0: float, *, keep: bool) -> None:
    import time

    import numpy as np

    from ..io._readers import read_mode_spectra
    from ._jobs import RunOptions, run_hessian, run_modes

    typer.echo(f"mdhess demo: Kob-Andersen glass, 10 frames x 500 atoms ({data})")
    hfile, mfile = out / "ka500_hessians.h5", out / "ka500_modes.h5"
    run_options = RunOptions(overwrite=True, quiet=quiet)
    h = run_hessian(str(data), "kob-andersen", hfile, format="bsr", options=run_options)
    typer.echo(f"  Hessians (BSR, float64): {h.n_frames} frames in {h.seconds:.2f} s -> {hfile} ({file_size(hfile)})")
    m = run_modes(str(hfile), mfile, k=k, solver="shift-invert", options=run_options)
    typer.echo(f"  lowest {k} modes per frame in {m.seconds:.2f} s -> {mfile} ({file_size(mfile)})")
    spectra = read_mode_spectra(mfile)
    typer.echo(f"  frame  softest frequencies ({spectra.frequency_unit})           participation ratio of the softest")
    for frame, f, pr in zip(spectra.frame_index, spectra.frequencies, spectra.participation_ratio):
        nz = np.flatnonzero(f != 0)[:3]  # projected (rigid-body) modes have frequency exactly 0
        typer.echo(f"  {int(frame):5d}  {np.array2string(f[nz], precision=4, floatmode='fixed'):40s}  {pr[nz[0]]:.3f}")
    if not keep:
        typer.echo(f"done in {time.perf_counter() - t0:.1f} s.")
        return
    typer.echo(f"done in {time.perf_counter() - t0:.1f} s. Next: mdhess info {mfile}")
    typer.echo(f"  python -c \"import mdhess; print(mdhess.read_hessian('{hfile}', 0))\"")

"""Text export of a modes file: CSV tables people read in a spreadsheet or pandas.

Two tables (docs/file-formats.md, "CSV export"):

- the modes table, one row per mode of each frame: ``frame`` (the source trajectory frame),
  ``mode`` (0-based index in the frame, lowest first), ``frequency`` (signed: imaginary modes
  negative, projected rigid-body modes exactly 0; in the file's ``frequency_unit``, THz or
  reduced) and ``participation_ratio``;
- the frames table, one row per frame, written beside it as ``<name>.frames.csv`` when the file
  holds per-frame values: the thermodynamics (``thermo_*``: temperature, free energy, ...,
  ``n_modes_used``) and the minimisation of a quenched frame (``quench_*``: max force, energy,
  iterations, converged).

Numbers are written with ``repr`` (17 significant digits): reading the CSV back gives the stored
float64 values exactly.
"""

import csv
import os

from ._frames import QUENCH_FIELDS, read_quench, read_spectrum, read_thermo
from ._readers import ResultFile

MODES_CSV_COLUMNS = ("frame", "mode", "frequency", "participation_ratio")


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def frames_csv_path(path) -> str:
    """``modes.csv`` -> ``modes.frames.csv`` (the per-frame table written beside a modes table)."""
    root, ext = os.path.splitext(os.fspath(path))
    return f"{root}.frames{ext or '.csv'}"


def write_modes_csv(modes_file, path) -> list[str]:
    """Write the modes of every frame of a modes file as CSV, and its per-frame values beside it.

    Args:
        modes_file: a finished file written by ``mdhess modes``.
        path: the modes table (``MODES_CSV_COLUMNS``); the frames table goes to
            ``frames_csv_path(path)`` when the file has thermodynamics or quenched frames.

    Returns:
        The paths written.

    Raises:
        InputError: missing, incomplete or non-modes file.
    """
    path = os.fspath(path)
    written = [path]
    with ResultFile(modes_file, "modes") as r:
        per_frame = []
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(MODES_CSV_COLUMNS)
            for slot in range(r.n_frames):
                frame = int(r.frame_index[slot])
                f, pr = read_spectrum(r, slot)
                for m in range(0 if f is None else f.shape[0]):
                    w.writerow([frame, m, _text(float(f[m])), "" if pr is None else _text(float(pr[m]))])
                per_frame.append((frame, read_thermo(r, slot), read_quench(r, slot)))
    thermo_keys = []
    for _, t, _ in per_frame:
        thermo_keys += [k for k in (t or {}) if k not in thermo_keys]
    quenched = any(q is not None for _, _, q in per_frame)
    if thermo_keys or quenched:
        fpath = frames_csv_path(path)
        cols = ["frame"] + [f"thermo_{k}" for k in thermo_keys] + ([f"quench_{k}" for k in QUENCH_FIELDS] if quenched else [])
        with open(fpath, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for frame, t, q in per_frame:
                row = [frame] + [_text((t or {}).get(k)) for k in thermo_keys]
                if quenched:
                    row += [_text((q or {}).get(k)) for k in QUENCH_FIELDS]
                w.writerow(row)
        written.append(fpath)
    return written

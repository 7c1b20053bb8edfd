"""Reading finished Hessian and modes files, frame by frame, and what an interrupted run left.

The writer (crash-safe, resumable, verified) is ``_results.ResultRun``; the layout of one frame
is ``_frames``. Errors name the file and the frame.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import InputError
from ._frames import read_frame, read_hessian_frame, read_modes_frame, read_quench, read_spectrum
from ._hdf5 import attr_str, first_line, open_hdf5, read_slice
from ._results import RESULT_KINDS, RUN_JSON, WORK_FILE
from ._trajectory import Frame


class ResultFile:
    """A finished Hessian or modes file opened for reading frame by frame."""

    def __init__(self, path, kind: str | None = None):
        self.path = os.fspath(path)
        self._file = open_hdf5(self.path, what=f"{kind or 'result'}")
        try:
            f = self._file
            self.kind = attr_str(f.attrs.get("mdhess_kind"))
            if self.kind not in RESULT_KINDS:
                raise InputError(f"{self.path!r} is not an mdhess Hessian or modes file (no mdhess_kind attribute)")
            if kind is not None and self.kind != kind:
                raise InputError(f"{self.path!r} is an mdhess {self.kind} file, not a {kind} file")
            if not bool(f.attrs.get("complete", False)) or "frame_index" not in f or "frames" not in f:
                raise InputError(f"{self.path!r} is incomplete (the run that wrote it did not finish)")
            self.attrs = {k: attr_str(v) if isinstance(v, (bytes, str)) else v for k, v in f.attrs.items()}
            try:
                self.settings = json.loads(attr_str(f.attrs.get("settings")) or "{}")
            except ValueError:
                raise InputError(f"{self.path!r}: the settings attribute is not readable JSON (damaged file)") from None
            if not isinstance(self.settings, dict):
                raise InputError(f"{self.path!r}: the settings attribute is not a JSON object (damaged file)")
            self.frame_index = np.asarray(read_slice(f["frame_index"], (), path=self.path, what="frame_index"))
            self.complete = np.asarray(read_slice(f["complete"], (), path=self.path, what="complete"))
            self.n_frames = int(self.frame_index.shape[0])
        except BaseException:
            self._file.close()
            raise

    def json_attr(self, name, default=None):
        v = self.attrs.get(name)
        if v is None:
            return default
        try:
            return json.loads(v) if isinstance(v, str) else v
        except ValueError:
            return v

    def group(self, frame: int):
        if isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)):
            raise InputError(f"frame must be an integer; got {frame!r}")
        k = int(frame) + (self.n_frames if frame < 0 else 0)
        if not 0 <= k < self.n_frames:
            raise InputError(f"frame {int(frame)} is out of range: {self.path!r} holds {self.n_frames} frames")
        if not self.complete[k]:
            raise InputError(f"{self.path!r}: frame {k} is not marked complete")
        name = f"frames/{k:06d}"
        if name not in self._file:
            raise InputError(f"{self.path!r}: group {name} is missing")
        return self._file[name]

    def array(self, group, name):
        if name not in group:
            return None
        return np.asarray(read_slice(group[name], (), path=self.path, what=f"{group.name}/{name}"))

    def hessian(self, frame: int):
        """Dense numpy (3N, 3N) array or scipy.sparse.bsr_matrix (see ``read_hessian_frame``)."""
        return read_hessian_frame(self, frame)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_hessian(path, frame: int = 0):
    """Read one frame's Hessian from a file written by ``mdhess hessian``.

    Args:
        path: the Hessian file.
        frame: position in the file (0 .. n_frames - 1, negative counts from the end); the
            source trajectory frame of each position is in the file's ``frame_index`` dataset.

    Returns:
        A (3N, 3N) numpy array (a file of format "dense") or a ``scipy.sparse.bsr_matrix``
        with (3, 3) blocks (format "bsr"), in the dtype stored.

    Raises:
        InputError: missing, non-HDF5, incomplete or non-Hessian file; frame out of range.
    """
    with ResultFile(path, "hessian") as r:
        return r.hessian(frame)


def read_modes(path, frame: int = 0):
    """Read one frame's normal modes from a file written by ``mdhess modes``.

    Args:
        path: the modes file.
        frame: position in the file (negative counts from the end); the source frame of each
            position is in the file's ``frame_index`` dataset.

    Returns:
        ``mdhess.NormalModes`` as ``mdhess.normal_modes`` returned it: eigenvalues (m,),
        vectors (3N, m) mass-weighted, masses, units, solver, positions and box of the frame;
        frequencies, displacements, participation ratios, thermodynamics() and plot_dos()
        work as on the original.

    Raises:
        InputError: missing, non-HDF5, incomplete or non-modes file; frame out of range.
    """
    with ResultFile(path, "modes") as r:
        return read_modes_frame(r, frame)


def read_frame_quench(path, frame: int = 0) -> dict | None:
    """How one frame of a Hessian or modes file was minimised before its Hessian (``mdhess.minimize``).

    Args:
        path: the Hessian or modes file.
        frame: position in the file (negative counts from the end).

    Returns:
        {"max_force", "energy", "iterations", "converged", "method", "fmax"} of the frame's
        minimisation (its positions in the file are the minimised ones), or None when the frame
        was not quenched (files written without quenching, or before it existed).

    Raises:
        InputError: missing, non-HDF5, incomplete or non-result file; frame out of range.
    """
    with ResultFile(path) as r:
        return read_quench(r, frame)


@dataclass(frozen=True)
class ModeSpectra:
    """Frequencies and participation ratios of some frames of a modes file.

    Attributes:
        frame_index: (F,) source frame of each frame read.
        frequencies: F arrays (m,), signed, projected modes exactly 0 (None where not stored).
        participation_ratio: F arrays (m,) (None where not stored).
        frequency_unit: "THz", "reduced", or "" when the file records none.
    """

    frame_index: np.ndarray
    frequencies: list
    participation_ratio: list
    frequency_unit: str


def read_mode_spectra(path, slots=None) -> ModeSpectra:
    """Read the frequencies and participation ratios of a modes file, frame by frame.

    Args:
        path: the modes file.
        slots: positions in the file to read (default: all, in order).

    Returns:
        ``ModeSpectra``.

    Raises:
        InputError: missing, non-HDF5, incomplete or non-modes file; a slot out of range.
    """
    with ResultFile(path, "modes") as r:
        slots = range(r.n_frames) if slots is None else list(slots)
        spectra = [read_spectrum(r, s) for s in slots]
        return ModeSpectra(
            frame_index=np.asarray([int(r.frame_index[s]) for s in slots], dtype=np.int64),
            frequencies=[f for f, _ in spectra],
            participation_ratio=[p for _, p in spectra],
            frequency_unit=str(r.attrs.get("frequency_unit", "")),
        )


class HessianFrames:
    """The frames of a Hessian file, read one at a time.

    Args:
        path: a finished file written by ``mdhess hessian``.

    Attributes:
        path, n_frames, n_atoms, units (the potential's unit system name or None), potential
        (the recorded potential, a dict, or None).

    Raises:
        InputError: missing, non-HDF5, incomplete or non-Hessian file, or no ``n_atoms`` attribute.
    """

    def __init__(self, path):
        self.file = ResultFile(path, "hessian")
        try:
            n_atoms = self.file.attrs.get("n_atoms")
            if n_atoms is None:
                raise InputError(f"{self.file.path!r}: Hessian file has no n_atoms attribute")
            self.path = self.file.path
            self.n_frames = self.file.n_frames
            self.n_atoms = int(n_atoms)
            self.units = self.file.attrs.get("units")
            self.potential = self.file.json_attr("potential")
        except BaseException:
            self.file.close()
            raise

    def frame(self, slot: int) -> Frame:
        """The frame in slot ``slot`` (``index``: its source frame); see ``read_frame``."""
        return read_frame(self.file, slot)

    def hessian(self, slot: int):
        """The Hessian in slot ``slot``; see ``read_hessian_frame``."""
        return read_hessian_frame(self.file, slot)

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_file_kind(path, *, what: str = "input") -> str | None:
    """The ``mdhess_kind`` of a file: "hessian", "modes", or None (a trajectory, or a file that is
    not HDF5: ``read_trajectory`` then decides whether it is one).

    Args:
        path: the file.
        what: how error messages name the file ("input", "file", ...).

    Raises:
        InputError: the file is missing, a directory, empty, or damaged HDF5.
    """
    import h5py

    p = Path(os.fspath(path))
    if p.is_file() and p.stat().st_size > 0 and not h5py.is_hdf5(str(p)):
        return None  # a text or MDAnalysis trajectory (or nothing readable: read_trajectory says which)
    with open_hdf5(path, what=what) as f:
        return attr_str(f.attrs.get("mdhess_kind"))




@dataclass(frozen=True)
class PartialRun:
    """An interrupted run: its ``OUTPUT.partial`` folder.

    Attributes:
        kind: "hessian" or "modes" (None when run.json does not say).
        settings: the run's settings (dict).
        n_frames: frames the run is to write.
        finished: frames written so far.
    """

    kind: str | None
    settings: dict
    n_frames: int
    finished: int


def read_partial_run(path) -> PartialRun | None:
    """The progress of an interrupted run, from its ``OUTPUT.partial`` folder.

    Args:
        path: the folder.

    Returns:
        ``PartialRun``, or None when ``path`` is not a folder with a run.json.

    Raises:
        InputError: run.json is not readable JSON.
    """
    folder = Path(os.fspath(path))
    run_json = folder / RUN_JSON
    if not run_json.is_file():
        return None
    try:
        run = json.loads(run_json.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{str(run_json)!r} is not readable JSON ({first_line(exc)})") from None
    settings, frames = (run.get("settings", {}), run.get("frames", [])) if isinstance(run, dict) else (None, None)
    if not isinstance(settings, dict) or not isinstance(frames, list):
        raise InputError(f"{str(run_json)!r} is not an mdhess run record (expected a JSON object with settings and frames)")
    kind = run.get("kind")
    return PartialRun(
        kind=kind if isinstance(kind, str) else None,
        settings=settings,
        n_frames=len(frames),
        finished=_finished_frames(folder / WORK_FILE),
    )


def _finished_frames(work_file: Path) -> int:
    """Frames marked complete in an interrupted run's work file (0 when it is missing or unreadable;
    a resumed run verifies each one before it keeps it)."""
    import h5py

    if not work_file.is_file():
        return 0
    for kw in ({"locking": False}, {}):  # no lock: the run may be going on; {}: this process has it open
        try:
            with h5py.File(work_file, "r", **kw) as f:
                frames = f.get("frames")
                if frames is None:
                    return 0
                return sum(1 for name in frames if bool(getattr(frames.get(name), "attrs", {}).get("complete", False)))
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError):  # read mid-write
            continue
    return 0

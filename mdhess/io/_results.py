"""Per-frame result files (Hessians, normal modes): crash-safe writing and reading.

Writing (``ResultRun``) never leaves a file that looks complete:

- each finished frame is written to its own shard ``OUTPUT.partial/frame-<slot>.h5``, first
  under a temporary name, then renamed (atomic), so a shard that exists is complete;
- ``OUTPUT.partial/run.json`` records the settings; ``resume=True`` continues a run with the
  same settings and skips the frames whose shards exist;
- when every frame is done the shards are copied (compressed chunks as they are) into a
  temporary file next to OUTPUT, which is marked complete and renamed to OUTPUT.

A kill -9 at any moment leaves at most a temporary shard or temporary output, which are ignored.
(Files are closed before they are renamed, which is all a killed process needs; nothing is
fsync'ed, so a power failure or kernel crash may lose recent frames; the throughput an fsync per
frame would cost is in docs/benchmarks.md, "Command line".)

Layout of OUTPUT (docs/file-formats.md): root attributes (``mdhess_kind`` "hessian" or
"modes", ``mdhess_file_version``, ``mdhess_version``, ``settings`` (JSON), ``complete``...),
``frame_index`` (F,) source frame of each slot, ``complete`` (F,) per-frame marks, and one group
``frames/<slot:06d>`` per frame, whose contents ``_frames`` writes and reads.
"""

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import InputError
from ._frames import read_frame, read_hessian_frame, read_modes_frame, read_spectrum
from ._hdf5 import attr_str, open_hdf5, read_slice
from ._trajectory import Frame

FILE_VERSION = 1
RUN_JSON = "run.json"  # in OUTPUT.partial: the settings of an interrupted run


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=lambda o: np.asarray(o).tolist())


class ResultRun:
    """Crash-safe, resumable writer of one per-frame result file.

    Args:
        output: path of the final file.
        kind: "hessian" or "modes".
        settings: JSON-able dict that fixes the results (input, potential, frames, format, ...).
            A resumed run must have identical settings.
        source_frames: source frame index of each output slot.
        resume: continue an interrupted run (skip finished frames).
        overwrite: replace an existing OUTPUT.
        note: callable(str) for one-line notices (e.g. printed on stderr).
    """

    def __init__(self, output, kind: str, settings: dict, source_frames, *, resume=False, overwrite=False, note=None):
        self.output = Path(os.fspath(output))
        self.kind = kind
        self.settings = json.loads(_json(settings))
        self.source_frames = [int(k) for k in source_frames]
        self.work = self.output.with_name(self.output.name + ".partial")
        self.note = note or (lambda s: None)
        self.already_complete = False
        if self.output.is_dir():
            raise InputError(f"output {str(self.output)!r} is a directory")
        if not self.output.parent.is_dir():
            raise InputError(f"output folder {str(self.output.parent)!r} does not exist")
        if self.output.exists() and not overwrite:
            if resume and self._output_matches():
                self.already_complete = True
                return
            hint = " (it was made with other settings)" if resume else ""
            raise InputError(f"output {str(self.output)!r} exists{hint}; pass overwrite=True to replace it")
        run_json = self.work / RUN_JSON
        if self.work.exists():
            if resume:
                try:
                    old = json.loads(run_json.read_text())
                except (OSError, ValueError):
                    old = None
                if old is not None and old != {"kind": kind, "settings": self.settings, "frames": self.source_frames}:
                    diff = self._diff(old)
                    raise InputError(
                        f"the interrupted run in {str(self.work)!r} used other settings ({diff}); "
                        "run without resume=True to start over"
                    )
                if old is None:
                    self.note(f"{self.work}: no readable run.json; starting over")
                    shutil.rmtree(self.work)
            else:
                self.note(f"discarding the interrupted run in {self.work} (pass resume=True to continue it)")
                shutil.rmtree(self.work)
        elif resume:
            self.note(f"no interrupted run at {self.work}; starting from the first frame")
        self.work.mkdir(exist_ok=True)
        if not run_json.exists():
            tmp = self.work / ".run.json.tmp"
            tmp.write_text(_json({"kind": kind, "settings": self.settings, "frames": self.source_frames}))
            os.replace(tmp, run_json)

    def _diff(self, old) -> str:
        if old.get("kind") != self.kind:
            return f"kind {old.get('kind')!r} vs {self.kind!r}"
        if old.get("frames") != self.source_frames:
            return "frames differ"
        o, n = old.get("settings", {}), self.settings
        keys = sorted(k for k in set(o) | set(n) if o.get(k) != n.get(k))
        return "differs in " + ", ".join(keys)

    def _output_matches(self) -> bool:
        try:
            import h5py

            with h5py.File(self.output, "r") as f:
                return (
                    attr_str(f.attrs.get("mdhess_kind")) == self.kind
                    and bool(f.attrs.get("complete", False))
                    and json.loads(attr_str(f.attrs.get("settings")) or "null") == self.settings
                    and [int(x) for x in f["frame_index"][()]] == self.source_frames
                )
        except (OSError, KeyError, ValueError):
            return False

    # -- frames ------------------------------------------------------------------------------
    def shard(self, slot: int) -> Path:
        return self.work / f"frame-{slot:06d}.h5"

    def pending(self) -> list[int]:
        """Slots not finished yet (a shard that exists was renamed into place, so it is complete)."""
        if self.already_complete:
            return []
        return [s for s in range(len(self.source_frames)) if not self.shard(s).exists()]

    def discard_if_empty(self) -> None:
        """Remove OUTPUT.partial when no frame was finished (a run that failed on its first frame)."""
        if not self.already_complete and self.work.exists() and not any(self.work.glob("frame-*.h5")):
            shutil.rmtree(self.work, ignore_errors=True)

    def write_frame(self, slot: int, fill) -> None:
        """Write slot ``slot``: ``fill(group)`` fills an h5py group; the shard appears atomically."""
        import h5py

        final = self.shard(slot)
        tmp = self.work / f".frame-{slot:06d}.h5.tmp"
        with h5py.File(tmp, "w") as f:
            g = f.create_group("frame")
            g.attrs["source_frame"] = self.source_frames[slot]
            fill(g)
            g.attrs["complete"] = True
        os.replace(tmp, final)

    def finish(self, attrs: dict) -> Path:
        """Merge the shards into OUTPUT (temporary file, then rename) and remove OUTPUT.partial."""
        import h5py

        from .._version import __version__

        if self.already_complete:
            return self.output
        missing = self.pending()
        if missing:
            raise RuntimeError(f"ResultRun.finish: slots {missing[:5]} are not written yet")
        tmp = self.output.with_name(f".{self.output.name}.tmp-{os.getpid()}")
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["mdhess_kind"] = self.kind
                f.attrs["mdhess_file_version"] = FILE_VERSION
                f.attrs["mdhess_version"] = __version__
                f.attrs["settings"] = _json(self.settings)
                f.attrs["complete"] = False
                for k, v in attrs.items():
                    f.attrs[k] = _json(v) if isinstance(v, (dict, list, tuple)) or v is None else v
                f.create_dataset("frame_index", data=np.asarray(self.source_frames, dtype=np.int64))
                frames = f.create_group("frames")
                for slot in range(len(self.source_frames)):
                    with h5py.File(self.shard(slot), "r") as s:
                        f.copy(s["frame"], frames, name=f"{slot:06d}")
                f.create_dataset("complete", data=np.ones(len(self.source_frames), dtype=np.uint8))
                f.attrs["complete"] = True
            os.replace(tmp, self.output)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        shutil.rmtree(self.work, ignore_errors=True)
        return self.output


# -- reading --------------------------------------------------------------------------------------
class ResultFile:
    """A finished Hessian or modes file opened for reading frame by frame."""

    def __init__(self, path, kind: str | None = None):
        self.path = os.fspath(path)
        self._file = open_hdf5(self.path, what=f"{kind or 'result'}")
        try:
            f = self._file
            self.kind = attr_str(f.attrs.get("mdhess_kind"))
            if self.kind not in ("hessian", "modes"):
                raise InputError(f"{self.path!r} is not an mdhess Hessian or modes file (no mdhess_kind attribute)")
            if kind is not None and self.kind != kind:
                raise InputError(f"{self.path!r} is an mdhess {self.kind} file, not a {kind} file")
            if not bool(f.attrs.get("complete", False)) or "frame_index" not in f or "frames" not in f:
                raise InputError(f"{self.path!r} is incomplete (the run that wrote it did not finish)")
            self.attrs = {k: attr_str(v) if isinstance(v, (bytes, str)) else v for k, v in f.attrs.items()}
            self.settings = json.loads(attr_str(f.attrs.get("settings")) or "{}")
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
    """The ``mdhess_kind`` of an HDF5 file: "hessian", "modes", or None (e.g. a trajectory).

    Args:
        path: the file.
        what: how error messages name the file ("input", "file", ...).

    Raises:
        InputError: the file is missing, a directory, not HDF5, or damaged.
    """
    with open_hdf5(path, what=what) as f:
        return attr_str(f.attrs.get("mdhess_kind"))


def input_identity(path) -> dict:
    """What identifies an input file in a run's settings: absolute path, size, modification time
    (a resumed run whose input changed has other settings and is refused)."""
    st = os.stat(path)
    return {"input": os.path.abspath(path), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}


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
        raise InputError(f"{str(run_json)!r} is not readable JSON ({exc})") from None
    return PartialRun(
        kind=run.get("kind"),
        settings=run.get("settings", {}),
        n_frames=len(run.get("frames", [])),
        finished=len(list(folder.glob("frame-*.h5"))),
    )

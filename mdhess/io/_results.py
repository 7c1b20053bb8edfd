"""Per-frame result files (Hessians, normal modes): crash-safe writing and reading.

Writing (``ResultRun``) never leaves a file that looks complete and is not:

- one run at a time per output: ``ResultRun`` holds an exclusive lock (``flock``) on
  ``OUTPUT.lock`` from its start to the rename of the finished file; a second run on the same output is
  refused with the holder's PID. The kernel drops the lock of a process that dies, so the lock
  of a killed run is taken over by the next one;
- every frame is written once, into the work file ``OUTPUT.partial/frames.h5`` (as the group
  ``frames/<slot:06d>`` it keeps in OUTPUT); after its datasets it records its source frame, the
  digest of the run's settings and a SHA-256 checksum of what was stored (``frame_digest``:
  every dataset's stored bytes, every attribute), is marked complete and the file is flushed. A
  frame that fails part-way is deleted again; one cut short by a kill is never marked complete;
- ``OUTPUT.partial/run.json`` records the settings; ``resume=True`` continues a run with the
  same settings. The interrupted work file is never appended to (a kill may have cut HDF5's
  metadata short anywhere): every frame in it is verified (readable, marked complete, source
  frame, settings, checksum), the good ones are copied into a fresh work file, and a damaged or
  misplaced one is named in a notice and recomputed; an unreadable work file is recomputed whole;
- when every frame is done, their marks are checked, the root attributes (settings, frame
  index, ``complete``) are written, and the work file is closed and renamed to OUTPUT (atomic):
  a file under OUTPUT's name is always complete. No frame is copied (earlier versions wrote each frame to
  its own shard file and merged them all at the end: every byte written twice);
- temporaries a killed process left (``.OUTPUT.tmp-PID``, ``.frames.h5.tmp-PID``) are removed by
  the next run when their process no longer exists;
- a full disk: each frame's room (its arrays' size plus 64 kB) is checked before anything of
  it is written, so HDF5 itself rarely meets a full disk; either way the error is an
  ``OSError(errno.ENOSPC)`` naming the file and frame, and the finished frames are kept.

A kill -9 at any moment leaves at most an unmarked frame or a temporary, which are ignored.
(Nothing is fsync'ed, so a power failure or kernel crash may lose recent frames, which a resumed
run then detects by their checksums; docs/benchmarks.md, "Command line".)

Layout of OUTPUT (docs/file-formats.md): root attributes (``mdhess_kind`` "hessian" or
"modes", ``mdhess_file_version``, ``mdhess_version``, ``settings`` (JSON), ``complete``...),
``frame_index`` (F,) source frame of each slot, ``complete`` (F,) per-frame marks, and one group
``frames/<slot:06d>`` per frame, whose contents ``_frames`` writes and reads (plus the
attributes ``source_frame``, ``settings_sha256``, ``sha256`` and ``complete`` added here).
"""

import errno
import hashlib
import json
import os
import shutil
import weakref
from pathlib import Path

import numpy as np

from .._errors import InputError
from ._hdf5 import attr_str, first_line, recording_chunks, replace_output

FILE_VERSION = 1
RESULT_KINDS = ("hessian", "modes", "elastic")  # the mdhess_kind of the files ResultRun writes
RUN_JSON = "run.json"  # in OUTPUT.partial: the settings of an interrupted run
LOCK_SUFFIX = ".lock"  # OUTPUT.lock: held (flock) by the run writing OUTPUT
HASH_BLOCK = 1 << 20  # bytes read at a time when fingerprinting an input file
WORK_FILE = "frames.h5"  # in OUTPUT.partial: the output being written, renamed to OUTPUT when complete
PART_NAME = "frames-p{rank:04d}.h5"  # in OUTPUT.partial: the frames of process rank > 0 (distributed)
PART_GLOB = "frames-p*.h5"
FILE_SLACK = 1 << 16  # bytes beyond a frame's arrays its group may need (HDF5 metadata: a few kB)
_UNHASHED_ATTRS = ("sha256", "complete")  # frame attributes the checksum does not cover


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=lambda o: np.asarray(o).tolist())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, ValueError, OSError):
        return False
    return True


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _is_no_space(exc: BaseException) -> bool:
    """Whether an exception (OSError, or h5py's OSError/RuntimeError) reports a full disk."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28," in text or "Disk quota exceeded" in text


def _write_failure(exc: BaseException, path) -> OSError:
    """An error while writing ``path`` as one OSError naming the file (ENOSPC for a full disk)."""
    if _is_no_space(exc):
        return OSError(errno.ENOSPC, "no space left writing", str(path))
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return OSError(exc.errno, f"cannot write ({exc.strerror})", str(path))
    return OSError(errno.EIO, f"cannot write ({first_line(exc)})", str(path))


# -- checksums -------------------------------------------------------------------------------------
def _attr_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return b"b" + value
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    a = np.asarray(value)
    if a.dtype.kind in "OSU":
        return b"o" + repr(a.tolist()).encode()
    return f"a{a.dtype.str}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()


def frame_digest(group, known: dict | None = None) -> str:
    """SHA-256 (hex) of one frame group: the names, dtypes, shapes and stored bytes of every
    dataset in it (each chunk as stored, compressed or not: HDF5's group copy, used by a resume's
    carry-over and a distributed run's merge, keeps chunks as they are, so a frame and its copy
    agree; contiguous datasets as read) and every attribute, except
    the group's own ``sha256`` and ``complete`` marks.

    Args:
        group: an h5py group (an output's or a work file's ``frames/<slot>``).
        known: chunk checksums recorded as the datasets were written (``_hdf5.recording_chunks``),
            by dataset name; used for a dataset whose dtype, shape, chunk shape and chunk count
            still match, instead of reading its chunks back. None: every chunk is read.

    Raises:
        OSError, RuntimeError, KeyError: unreadable data (the caller reports the file as damaged).
    """
    import h5py

    h = hashlib.sha256()

    def attrs(obj, skip=()):
        for key in sorted(obj.attrs.keys()):
            if key not in skip:
                h.update(b"\0A" + key.encode() + b"\0" + _attr_bytes(obj.attrs[key]))

    attrs(group, _UNHASHED_ATTRS)
    names: list[str] = []
    group.visit(names.append)
    for name in sorted(names):
        obj = group[name]
        h.update(b"\0N" + name.encode())
        if isinstance(obj, h5py.Dataset):
            if obj.shape is None:
                h.update(b"empty")
            elif obj.chunks is not None:  # the stored (compressed) chunk bytes: no decompression
                h.update(f"C{obj.dtype.str}{obj.shape}{obj.chunks}".encode())
                dsid, chunks = obj.id, []
                memo = (known or {}).get(obj.name)
                n_chunks = dsid.get_num_chunks()
                if memo is not None and memo[:3] == (obj.dtype.str, obj.shape, obj.chunks) and len(memo[3]) == n_chunks:
                    chunks = list(memo[3])  # recorded as written: no read-back
                else:
                    for i in range(n_chunks):
                        offset = tuple(int(o) for o in dsid.get_chunk_info(i).chunk_offset)
                        mask, raw = dsid.read_direct_chunk(offset)
                        chunks.append((offset, int(mask), hashlib.sha256(raw).digest()))
                for offset, mask, d in sorted(chunks):
                    h.update(f"{offset}{mask}".encode() + d)
            else:
                a = np.ascontiguousarray(obj[()])
                h.update(f"D{a.dtype.str}{a.shape}".encode())
                h.update(a.tobytes() if a.dtype.kind in "OSU" else memoryview(a.reshape(-1)).cast("B"))
        else:
            h.update(b"G")
        attrs(obj)
    return h.hexdigest()


def check_frame_group(group, source_frame: int, settings_sha256: str | None = None, *, data=True) -> str | None:
    """Why a stored frame group cannot be trusted, or None when it checks out.

    Args:
        group: the frame's h5py group.
        source_frame: the source frame the slot must hold.
        settings_sha256: the run's settings digest the frame must record (None: not checked).
        data: verify the checksum (False: only the marks, source frame and settings digest).

    Returns:
        None, or a short reason ("checksum mismatch: damaged data", "source frame 3, not 5", ...).
    """
    import h5py

    if not isinstance(group, h5py.Group):
        return "no frame group"
    a = group.attrs
    if not bool(a.get("complete", False)):
        return "not marked complete"
    sf = a.get("source_frame")
    try:
        sf = int(sf)
    except (TypeError, ValueError):
        return "no source_frame attribute"
    if sf != int(source_frame):
        return f"source frame {sf}, not {int(source_frame)}"
    if settings_sha256 is not None and attr_str(a.get("settings_sha256")) != settings_sha256:
        return "written by a run with other settings"
    want = attr_str(a.get("sha256"))
    if want is None:
        return "no checksum"
    if not data:
        return None
    try:
        got = frame_digest(group)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        return f"unreadable data: {first_line(exc)}"
    if got != want:
        return "checksum mismatch: damaged data"
    return None


def _settings_diff(old: dict, new: dict) -> str:
    """Which settings differ, in words ("differs in input content (the input file changed), format")."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    named = {"input_sha256": "input content (the input file changed)", "input_size": "input size"}
    return "differs in " + ", ".join(named.get(k, k) for k in keys)


# -- the output lock -------------------------------------------------------------------------------
_HELD: dict = {}  # lock file path -> the OutputLock holding it in this process


class OutputLock:
    """An exclusive ``flock`` on ``OUTPUT.lock`` (holding the holder's PID), taken without waiting.

    Excludes other processes. A lock whose process died is released by the kernel, so a stale
    ``OUTPUT.lock`` is taken over. Within one process a newer lock on the same output takes the
    lock over from an older one (a run abandoned after an error, e.g. in a notebook, does not
    block the retry); one process runs one job per output at a time. Where the file system does
    not support locks, ``acquire`` notes it and goes on.
    """

    def __init__(self, output: Path, note=None):
        self.output = output
        self.path = output.with_name(output.name + LOCK_SUFFIX)
        self.note = note or (lambda s: None)
        self.fd = None

    def acquire(self) -> None:
        """Raises InputError naming the output and the holder's PID when another run holds it."""
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no locking
            return
        key = os.path.abspath(self.path)
        older = _HELD.get(key)
        if older is not None and older.fd is not None:  # this process holds it already: take it over
            self.fd, older.fd = older.fd, None
            _HELD[key] = self
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                raise InputError(
                    f"output {str(self.output)!r} is being written by another mdhess run "
                    f"(PID {holder}, lock {str(self.path)!r}); wait for it to finish or stop it"
                ) from None
            except OSError as exc:
                os.close(fd)
                self.note(f"cannot lock {self.path} ({exc.strerror or exc}); a second run on {self.output} would not be detected")
                return
            try:  # the previous holder may have removed the file between our open and flock
                st, fst = os.stat(self.path), os.fstat(fd)
                same = (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        _HELD[key] = self

    @staticmethod
    def _holder(fd) -> str:
        try:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        return text if text.isdigit() else "unknown"

    def release(self) -> None:
        """Remove the lock file (while still holding it) and release the lock; idempotent."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        key = os.path.abspath(self.path)
        if _HELD.get(key) is self:
            del _HELD[key]
        _unlink(self.path)
        os.close(fd)


class FrameFile:
    """The frames of one run in one HDF5 file, each written once and verifiable (the base of
    ``ResultRun``, which writes OUTPUT's work file, and ``ResultPart``, a distributed
    process's part file). Subclasses set ``work``, ``work_file``, ``source_frames``,
    ``settings_sha256`` and ``done``."""

    _h5 = None  # the open file
    _largest = 0  # bytes of the largest frame written (the next frame's room is checked against it)

    def _file(self):
        import h5py

        if self._h5 is None:
            try:
                self._h5 = h5py.File(self.work_file, "a")
                self._h5.require_group("frames")
            except (OSError, RuntimeError) as exc:
                self._close_file()
                raise _write_failure(exc, self.work_file) from None
        return self._h5

    def _close_file(self) -> None:
        f, self._h5 = self._h5, None
        if f is not None:
            try:
                f.close()
            except Exception:  # a file HDF5 cannot close cleanly: the next run verifies what it holds
                pass

    def write_frame(self, slot: int, fill, *, nbytes: int | None = None) -> None:
        """Write slot ``slot`` into the work file: ``fill(group)`` fills an h5py group, then its
        source frame, the settings digest and the checksum of what was stored are recorded, the
        frame is marked complete and the file flushed. The frame's bytes are written once: the
        work file becomes OUTPUT when the run finishes.

        Args:
            slot: the output slot.
            fill: ``fill(group)`` writes the frame's datasets and attributes.
            nbytes: about how many bytes the frame stores (its arrays' size); the disk must have
                that much room (plus 64 kB) before anything is written. None: the largest frame
                written so far (nothing is checked before the first).

        Raises:
            OSError: the frame could not be written (errno ENOSPC: the disk is full), naming the
                file and the frame; nothing of the frame is left behind.
        """
        k = self.source_frames[slot]
        where = f"{self.work_file} (frame {k})"
        need = max(int(nbytes or 0), self._largest)
        if need and shutil.disk_usage(self.work).free < need * 1.05 + FILE_SLACK:
            raise OSError(errno.ENOSPC, "no space left writing", where)
        f = self._file()
        name = f"{slot:06d}"
        frames = f["frames"]
        self.done.discard(slot)
        try:
            if name in frames:
                del frames[name]
            g = frames.create_group(name)
            g.attrs["source_frame"] = k
            g.attrs["settings_sha256"] = self.settings_sha256
            with recording_chunks() as known:
                fill(g)
            g.attrs["sha256"] = frame_digest(g, known)
            g.attrs["complete"] = True
            f.flush()
        except BaseException as exc:
            try:  # what the frame wrote goes; the frames before it stay (an unflushed group is never marked complete)
                if name in frames:
                    del frames[name]
                f.flush()
            except Exception:
                self._close_file()
            if isinstance(exc, (OSError, RuntimeError)):
                raise _write_failure(exc, where) from None
            raise
        self.done.add(slot)
        self._largest = max(self._largest, int(nbytes or 0))



class ResultPart(FrameFile):
    """distributed: the frames process ``rank`` > 0 computes, written to its part file in
    OUTPUT.partial (on a file system every process sees) for process 0 to merge
    (``ResultRun.merge_parts``). Takes no lock: process 0's ``ResultRun`` holds the output's.

    Args:
        output, kind, settings, source_frames: as the ``ResultRun`` of process 0.
        rank: this process's rank (>= 1).
    """

    def __init__(self, output, kind: str, settings: dict, source_frames, rank: int):
        self.output = Path(os.fspath(output))
        self.source_frames = [int(k) for k in source_frames]
        self.settings_sha256 = run_digest(kind, settings, self.source_frames)
        self.work = self.output.with_name(self.output.name + ".partial")
        self.work_file = self.work / PART_NAME.format(rank=int(rank))
        self.done = set()
        _unlink(self.work_file)  # an earlier run's part was carried over by process 0 already

    def close(self) -> None:
        self._close_file()

    def __del__(self):
        try:
            self._close_file()
        except Exception:
            pass


def run_digest(kind: str, settings: dict, source_frames) -> str:
    """SHA-256 of a run's record (kind, settings, source frames): every frame records it."""
    record = {"kind": kind, "settings": json.loads(_json(settings)), "frames": [int(k) for k in source_frames]}
    return hashlib.sha256(_json(record).encode()).hexdigest()


_RUNS: dict = {}  # output path -> weak reference to the newest ResultRun on it in this process


class ResultRun(FrameFile):
    """Crash-safe, resumable writer of one per-frame result file, each frame written once.

    Holds the output's lock (``OUTPUT.lock``) from construction until ``finish``, ``close`` or
    ``discard_if_empty`` (a run that stops on an error).

    Args:
        output: path of the final file.
        kind: "hessian" or "modes".
        settings: JSON-able dict that fixes the results (input, potential, frames, format, ...).
            A resumed run must have identical settings.
        source_frames: source frame index of each output slot.
        resume: continue an interrupted run (keep the finished frames that verify).
        overwrite: replace an existing OUTPUT.
        note: callable(str) for one-line notices (e.g. printed on stderr).

    Raises:
        InputError: another run holds the output; the output exists (without overwrite, or with
            resume and other settings, or damaged); a resumed run with other settings.
        OSError: a resumed run's finished frames could not be carried over (errno ENOSPC: the
            disk is full).
    """

    def __init__(self, output, kind: str, settings: dict, source_frames, *, resume=False, overwrite=False, note=None):
        self.output = Path(os.fspath(output))
        self.kind = kind
        self.settings = json.loads(_json(settings))
        self.source_frames = [int(k) for k in source_frames]
        self.work = self.output.with_name(self.output.name + ".partial")
        self.work_file = self.work / WORK_FILE
        self.note = note or (lambda s: None)
        self.already_complete = False
        self.done: set[int] = set()  # slots finished: written here, or verified and carried over
        self._h5 = None  # the open work file
        self._largest = 0  # bytes of the largest frame written (the next frame's room is checked against it)
        self.lock = OutputLock(self.output, self.note)
        self.run_record = {"kind": kind, "settings": self.settings, "frames": self.source_frames}
        self.settings_sha256 = run_digest(kind, self.settings, self.source_frames)
        if self.output.is_dir():
            raise InputError(f"output {str(self.output)!r} is a directory")
        if not self.output.parent.is_dir():
            raise InputError(f"output folder {str(self.output.parent)!r} does not exist")
        self.lock.acquire()
        older = _RUNS.get(os.path.abspath(self.output))
        if older is not None and older() is not None and older() is not self:
            older()._close_file()  # an abandoned run on this output in this process: the lock was taken over
        _RUNS[os.path.abspath(self.output)] = weakref.ref(self)
        try:
            self._start(resume, overwrite)
        except BaseException:
            self._close_file()
            self.lock.release()
            raise

    def _start(self, resume: bool, overwrite: bool) -> None:
        self._remove_stale_temporaries()
        if self.output.exists() and not overwrite:
            if not resume:
                raise InputError(f"output {str(self.output)!r} exists; pass overwrite=True to replace it")
            state, why = self._output_state()
            if state == "complete":
                self.already_complete = True
                self._remove_finished_work()
                return
            if state == "other":
                raise InputError(
                    f"output {str(self.output)!r} exists (it was made with other settings: {why}); "
                    "pass overwrite=True to replace it"
                )
            if state == "foreign":
                raise InputError(
                    f"output {str(self.output)!r} exists and is not an mdhess {self.kind} file ({why}); "
                    "pass overwrite=True to replace it"
                )
            raise InputError(
                f"output {str(self.output)!r} exists but is damaged or incomplete ({why}); "
                "pass overwrite=True to replace it"
            )
        run_json = self.work / RUN_JSON
        if self.work.exists():
            if resume:
                try:
                    old = json.loads(run_json.read_text())
                except (OSError, ValueError):
                    old = None
                if not (isinstance(old, dict) and isinstance(old.get("settings"), dict) and isinstance(old.get("frames"), list)):
                    self.note(f"{self.work}: no readable run.json; starting over")
                    shutil.rmtree(self.work)
                elif old != self.run_record:
                    raise InputError(
                        f"the interrupted run in {str(self.work)!r} used other settings ({self._diff(old)}); "
                        "run without resume=True to start over"
                    )
                else:
                    self._carry_over()
            else:
                self.note(f"discarding the interrupted run in {self.work} (pass resume=True to continue it)")
                shutil.rmtree(self.work)
        elif resume:
            self.note(f"no interrupted run at {self.work}; starting from the first frame")
        try:
            self.work.mkdir(exist_ok=True)
            if not run_json.exists():
                tmp = self.work / f".run.json.tmp-{os.getpid()}"
                try:
                    tmp.write_text(_json(self.run_record))
                    os.replace(tmp, run_json)
                except BaseException:
                    _unlink(tmp)
                    raise
        except OSError as exc:
            raise _write_failure(exc, run_json) from None

    def _remove_finished_work(self) -> None:
        """OUTPUT.partial of this very run left after OUTPUT was complete (a kill after the rename)."""
        try:
            done = json.loads((self.work / RUN_JSON).read_text()) == self.run_record
        except (OSError, ValueError):
            done = False
        if done:
            self.note(f"removing {self.work}: {self.output} is complete")
            shutil.rmtree(self.work, ignore_errors=True)

    def _remove_stale_temporaries(self) -> None:
        """Temporaries of processes that no longer exist (a kill -9 while carrying frames over)."""
        prefix = f".{self.output.name}.tmp-"
        try:
            names = os.listdir(self.output.parent)
        except OSError:
            names = []
        stale = [self.output.parent / n for n in names if n.startswith(prefix) and self._stale(n[len(prefix) :])]
        if self.work.is_dir():
            for p in self.work.iterdir():
                n = p.name
                if n.startswith(".") and ".tmp" in n and self._stale(n.rsplit(".tmp", 1)[1].lstrip("-")):
                    stale.append(p)
        for p in stale:
            if p.is_file():
                self.note(f"removing {p}, left by an earlier run that was killed")
                _unlink(p)

    @staticmethod
    def _stale(pid_text: str) -> bool:
        return not pid_text.isdigit() or not _pid_alive(int(pid_text))

    def _diff(self, old) -> str:
        if old.get("kind") != self.kind:
            return f"kind {old.get('kind')!r} vs {self.kind!r}"
        if old.get("frames") != self.source_frames:
            return "frames differ"
        o = old.get("settings", {})
        if not isinstance(o, dict):
            return "unreadable settings"
        return _settings_diff(o, self.settings)

    def _output_state(self) -> tuple[str, str | None]:
        """("complete", None) when OUTPUT is this run's finished, verified file; otherwise
        ("other", what differs), ("foreign", what it is) or ("damaged", why)."""
        import h5py

        try:
            if not h5py.is_hdf5(os.fspath(self.output)):
                return "damaged", "not an HDF5 file"
            with h5py.File(self.output, "r") as f:
                kind = attr_str(f.attrs.get("mdhess_kind"))
                if kind not in RESULT_KINDS:
                    return "foreign", "no mdhess_kind attribute"
                if kind != self.kind:
                    return "foreign", f"an mdhess {kind} file"
                if not bool(f.attrs.get("complete", False)) or "frame_index" not in f or "frames" not in f:
                    return "damaged", "not marked complete"
                try:
                    settings = json.loads(attr_str(f.attrs.get("settings")) or "null")
                except ValueError:
                    return "damaged", "unreadable settings attribute"
                frames = [int(x) for x in f["frame_index"][()]]
                if frames != self.source_frames:
                    return "other", "other frames"
                if not isinstance(settings, dict):
                    return "damaged", "unreadable settings attribute"
                if settings != self.settings:
                    return "other", _settings_diff(settings, self.settings)
                for slot, k in enumerate(frames):
                    g = f.get(f"frames/{slot:06d}")
                    if g is not None and "sha256" not in g.attrs and bool(g.attrs.get("complete", True)):
                        continue  # written before checksums were recorded: nothing to verify against
                    why = check_frame_group(g, k)
                    if why is not None:
                        return "damaged", f"frame {slot}: {why}"
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            return "damaged", f"cannot be read: {first_line(exc)}"
        return "complete", None

    def _good_frames(self, path: Path, want) -> list[int] | None:
        """Slots among ``want`` whose frame in ``path`` verifies (a bad one is named in a notice);
        None when the file cannot be read at all (also named)."""
        import h5py

        why_unreadable = None
        keep: list[int] = []
        try:
            if path.stat().st_size == 0:
                why_unreadable = "empty"
            elif not h5py.is_hdf5(os.fspath(path)):
                why_unreadable = "not an HDF5 file: overwritten or zeroed"
            else:
                with h5py.File(path, "r", locking=False) as f:
                    for slot in want:
                        k = self.source_frames[slot]
                        g = f.get(f"frames/{slot:06d}")
                        if g is None:
                            continue
                        why = check_frame_group(g, k, self.settings_sha256)
                        if why is None:
                            keep.append(slot)
                        elif why != "not marked complete":  # a frame cut short by the kill: silently redone
                            self.note(f"{path}: frame {k} (slot {slot}) cannot be used ({why}); recomputing frame {k}")
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            why_unreadable = f"truncated or damaged: {first_line(exc)}"
        if why_unreadable is not None:
            self.note(f"{path} cannot be read ({why_unreadable}); recomputing all its frames")
            return None
        return keep

    def _carry_over(self) -> None:
        """A resumed run: verify every frame of the interrupted run's work file (and of the part
        files of other processes, distributed) and copy the good ones into a fresh work file
        (the old one may have been cut short anywhere by a kill, so nothing is ever appended to
        it). A frame that does not verify is named and recomputed."""
        import h5py

        sources = [p for p in [self.work_file, *sorted(self.work.glob(PART_GLOB))] if p.exists()]
        if not sources:
            return
        keep: dict[int, Path] = {}
        for path in sources:
            good = self._good_frames(path, [s for s in range(len(self.source_frames)) if s not in keep])
            for slot in good or []:
                keep[slot] = path
        tmp = self.work / f".{WORK_FILE}.tmp-{os.getpid()}"
        if keep:
            if shutil.disk_usage(self.work).free < sum(p.stat().st_size for p in set(keep.values())) * 1.01 + FILE_SLACK:
                raise OSError(errno.ENOSPC, "no space left writing", str(tmp))
            try:
                try:
                    with h5py.File(tmp, "w") as dst:
                        frames = dst.create_group("frames")
                        for path in sources:
                            slots = [s for s, p in keep.items() if p == path]
                            if slots:
                                with h5py.File(path, "r", locking=False) as src:
                                    for slot in sorted(slots):
                                        src.copy(src[f"frames/{slot:06d}"], frames, name=f"{slot:06d}")
                    os.replace(tmp, self.work_file)
                except (OSError, RuntimeError) as exc:
                    raise _write_failure(exc, tmp) from None
            except BaseException:
                _unlink(tmp)
                raise
        else:
            _unlink(self.work_file)
        for path in sources:
            if path != self.work_file:
                _unlink(path)
        self.done = set(keep)

    def merge_parts(self, ranks) -> None:
        """distributed: copy the frames the other processes wrote (their part files,
        ``part_path(rank)``, complete and closed) into the work file, each verified against its
        checksum first (they come through a shared file system), and remove the part files.

        Raises:
            InputError: a part file or one of its frames does not verify (the good frames are
                kept: a resumed run recomputes the rest).
            OSError: the copy could not be written (errno ENOSPC: the disk is full).
        """
        import h5py

        f = self._file()
        for rank in ranks:
            path = self.part_path(rank)
            if not path.exists():
                continue
            good = self._good_frames(path, self.pending())
            if good is None:
                raise InputError(f"{str(path)!r} (the frames of process {rank}) cannot be read; rerun with resume=True")
            try:
                with h5py.File(path, "r", locking=False) as src:
                    for slot in good:
                        src.copy(src[f"frames/{slot:06d}"], f["frames"], name=f"{slot:06d}")
                        self.done.add(slot)
                f.flush()
            except (OSError, RuntimeError) as exc:
                raise _write_failure(exc, self.work_file) from None
            _unlink(path)

    def part_path(self, rank: int) -> Path:
        """The work file of process ``rank`` > 0 of a distributed run."""
        return self.work / PART_NAME.format(rank=rank)

    # -- frames ------------------------------------------------------------------------------
    def pending(self) -> list[int]:
        """Slots not finished yet."""
        if self.already_complete:
            return []
        return [s for s in range(len(self.source_frames)) if s not in self.done]

    def close(self) -> None:
        """Close the work file and release the output's lock (``finish`` does it too); idempotent."""
        self._close_file()
        self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if getattr(self, "_h5", None) is not None:
                self._close_file()
            lock = getattr(self, "lock", None)
            if lock is not None:
                lock.release()
        except Exception:  # interpreter shutdown: modules already torn down
            pass

    def discard_if_empty(self) -> None:
        """A run that stops on an error: remove OUTPUT.partial when no frame was finished (a run
        that failed on its first frame) and release the output's lock."""
        try:
            self._close_file()
            if not self.already_complete and not self.done and self.work.exists():
                shutil.rmtree(self.work, ignore_errors=True)
        finally:
            self.close()

    def finish(self, attrs: dict) -> Path:
        """Check every frame's marks, write the file's root attributes, mark it complete and
        rename it to OUTPUT; removes OUTPUT.partial and releases the output's lock.

        Raises:
            OSError: the root attributes could not be written (errno ENOSPC: the disk is full);
                the frames are kept for a resumed run.
        """
        try:
            return self._finish(attrs)
        finally:
            self.close()

    def _finish(self, attrs: dict) -> Path:
        from .._version import __version__

        if self.already_complete:
            return self.output
        missing = self.pending()
        if missing:
            raise RuntimeError(f"ResultRun.finish: slots {missing[:5]} are not written yet")
        n = len(self.source_frames)
        if shutil.disk_usage(self.work).free < FILE_SLACK:
            raise OSError(errno.ENOSPC, "no space left writing", str(self.output))
        try:
            f = self._file()
            for slot, k in enumerate(self.source_frames):  # the marks (the data were hashed as written)
                why = check_frame_group(f["frames"].get(f"{slot:06d}"), k, self.settings_sha256, data=False)
                if why is not None:
                    raise RuntimeError(f"ResultRun.finish: frame {k} (slot {slot}): {why}")
            f.attrs["mdhess_kind"] = self.kind
            f.attrs["mdhess_file_version"] = FILE_VERSION
            f.attrs["mdhess_version"] = __version__
            f.attrs["settings"] = _json(self.settings)
            for key, v in attrs.items():
                f.attrs[key] = _json(v) if isinstance(v, (dict, list, tuple)) or v is None else v
            for name, data in (("frame_index", np.asarray(self.source_frames, dtype=np.int64)),
                               ("complete", np.ones(n, dtype=np.uint8))):  # fmt: skip
                if name in f:
                    del f[name]
                f.create_dataset(name, data=data)
            f.attrs["complete"] = True
            self._h5 = None
            f.close()
            # not renamed over the old output (replace_output); a kill in between leaves the
            # complete work file in OUTPUT.partial, which --resume finishes computing nothing
            replace_output(self.work_file, self.output)
        except (OSError, RuntimeError) as exc:
            self._close_file()
            if isinstance(exc, RuntimeError) and str(exc).startswith("ResultRun.finish"):
                raise
            raise _write_failure(exc, self.output) from None
        shutil.rmtree(self.work, ignore_errors=True)
        return self.output


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's whole content, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def input_identity(path) -> dict:
    """What identifies an input file in a run's settings: absolute path, size and the SHA-256 of
    its whole content (a resumed run whose input changed, even to a same-size file with the same
    modification time, has other settings and is refused; a copied or touched input is the same).
    Hashing reads the file once (about 1 GB/s; docs/benchmarks.md, "Command line").

    Raises:
        InputError: the file cannot be read.
    """
    try:
        st = os.stat(path)
        digest = file_sha256(path)
    except OSError as exc:
        raise InputError(f"input {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    return {"input": os.path.abspath(path), "input_size": st.st_size, "input_sha256": digest}

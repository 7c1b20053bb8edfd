"""The work behind ``mdhess hessian`` and ``mdhess modes``: stream frames, compute, write each
finished frame crash-safely. Used by the commands, the demo and the benchmark; raises
``InputError`` for bad input (the commands turn it into exit code 2).

This module decides what to compute and which settings to record; how frames and files are laid
out on disk is ``mdhess.io``'s (``write_hessian_frame``, ``write_modes_frame``, ``ResultRun``).

Before any frame is read the input is checked against the potential (docs/cli.md, "Units,
species and sizes"): the file's declared length unit against the potential's unit system, the
file's species against the potential's species tables, and the declared size against the memory
limit. A mismatch that would give a wrong number is an error, never a silent guess."""

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from .._checks import check_choice
from .._errors import InputError, MemoryPlanError
from .._units import UNIT_SYSTEMS
from ..io import Frame, ResultRun, length_factor, read_trajectory
from ..io._frames import HESSIAN_COMPRESSIONS, read_quench, write_hessian_frame, write_modes_frame
from ..io._readers import HessianFrames, read_file_kind, read_mode_spectra
from ..io._results import input_identity
from ..io._trajectory import format_bytes, is_reduced_unit
from ..pair._layouts import HESSIAN_FORMATS
from ._common import Progress, note, parse_frames

HESSIAN_DTYPES = ("float64", "float32")
MODES_DENSE_MAX_ATOMS = 1000  # trajectory input of the modes job: dense Hessians up to this size, BSR above


@dataclass
class JobResult:
    output: str
    n_frames: int
    computed: int
    seconds: float
    summary: list = field(default_factory=list)  # per computed frame: dict
    csv_files: list = field(default_factory=list)  # CSV files written (modes --csv)


@dataclass(frozen=True)
class SourceOptions:
    """Which frames of the input are used and how they are read.

    Attributes:
        frames: "START:STOP:STEP" or "K" (``--frames``); None: all.
        group: H5MD particle group (``--group``); None: the only one, or "all".
        reference_frame: elastic networks: input frame whose pairs become springs.
        length_scale_override: factor applied to the input's lengths (``--length-scale``);
            None: from the file's length unit to the potential's.
        ignore_species: every atom is the potential's species 0, whatever the file says
            (``--ignore-species``).
        input_format: the input's format (``--input-format``); None: detected.
        topology: DCD / XTC / TRR input: the topology file (``--topology``).
        species_map: "LABEL=SPECIES,..." (``--species-map``): how the file's names, symbols
            or types become the potential's species.
    """

    frames: str | None = None
    group: str | None = None
    reference_frame: int = 0
    length_scale_override: float | None = None
    ignore_species: bool = False
    input_format: str | None = None
    topology: str | None = None
    species_map: str | None = None

    def settings(self) -> dict:
        """What these options add to a run's settings (only what changes results)."""
        out = {"ignore_species": True} if self.ignore_species else {}
        if self.species_map:
            out["species_map"] = self.species_map
        if self.topology is not None:
            out["topology"] = os.path.abspath(self.topology)
        return out

    def open(self, input):
        """The input trajectory, opened for streaming as these options say (``mdhess.read_trajectory``)."""
        if self.input_format is not None:
            from ..io import TRAJECTORY_FORMATS

            check_choice(self.input_format, TRAJECTORY_FORMATS, label="--input-format")
        return read_trajectory(input, format=self.input_format, group=self.group, topology=self.topology,
                               species_map=self.species_map)  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    """How the output file is written and whether progress is shown.

    Attributes:
        resume: continue an interrupted run (``--resume``).
        overwrite: replace an existing output (``--overwrite``).
        quiet: no progress on stderr (``--quiet``).
        processes: frames computed by this many worker processes (``--processes``; 1: in this
            process; 0: one per CPU core). Results do not depend on it.
        distributed: split the frames across the processes of JAX's distributed runtime
            (``--distributed``; ``mdhess.distributed.initialize`` must have run). Each process
            runs the same job; process 0 writes the one output file.
    """

    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    processes: int = 1
    distributed: bool = False

    def check(self) -> None:
        """Raises InputError for a process count that is not an integer >= 0."""
        p = self.processes
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
            raise InputError(f"--processes must be an integer >= 0 (0: one per CPU core); got {p!r}")

    def workers(self, n_frames: int) -> int:
        """Processes to compute ``n_frames`` pending frames, this one included (1: this one alone)."""
        from ._pool import cpu_count

        p = cpu_count() if self.processes == 0 else int(self.processes)
        return max(1, min(p, n_frames))


@dataclass(frozen=True)
class ThermoOptions:
    """Harmonic thermodynamics of each frame's modes; none when ``temperature`` is None.

    Attributes:
        temperature: K, or epsilon / k_B in reduced units (``--temperature``).
        hbar: hbar in reduced units (``--hbar``), needed for lj (reduced) units.
        classical: classical instead of quantum oscillators (``--classical``).
    """

    temperature: float | None = None
    hbar: float | None = None
    classical: bool = False

    def check(self) -> None:
        """Raises InputError for a temperature or hbar that is not a finite number > 0."""
        if self.temperature is not None and not (np.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"--temperature must be a finite number > 0; got {self.temperature}")
        if self.hbar is not None and not (np.isfinite(self.hbar) and self.hbar > 0):
            raise InputError(f"--hbar must be a finite number > 0; got {self.hbar}")

    def check_units(self, units: str | None) -> None:
        """Raises InputError when a temperature in reduced units (``units`` None or "lj") comes without hbar."""
        if self.temperature is not None and units in (None, "lj") and self.hbar is None:
            raise InputError(
                f"--temperature in reduced units ({units or 'none'}) needs --hbar (hbar in reduced units): "
                "harmonic free energies and entropies depend on it"
            )

    def of(self, modes):
        """``modes.thermodynamics(...)`` at this temperature, or None without one."""
        if self.temperature is None:
            return None
        return modes.thermodynamics(self.temperature, quantum=not self.classical, hbar=self.hbar)


@dataclass(frozen=True)
class QuenchOptions:
    """Minimise each frame before its Hessian (``--quench``): the inherent structure of an MD frame.

    Attributes:
        enabled: quench (``--quench``).
        fmax: force tolerance, energy / length (``--fmax``).
        method: "fire" or "lbfgs" (``mdhess.minimize``).
        maxiter: step limit (None: ``mdhess.minimize``'s default).
    """

    enabled: bool = False
    fmax: float = 1e-10
    method: str = "fire"
    maxiter: int | None = None

    def check(self) -> None:
        """Raises InputError for an fmax that is not a finite number > 0."""
        if self.enabled and not (isinstance(self.fmax, (int, float)) and np.isfinite(self.fmax) and self.fmax > 0):
            raise InputError(f"--fmax must be a finite number > 0; got {self.fmax}")

    def settings(self) -> dict:
        """What quenching adds to a run's settings (nothing when off: older runs resume as before)."""
        return {"quench": {"fmax": self.fmax, "method": self.method, "maxiter": self.maxiter}} if self.enabled else {}


LONG_FRAME_ATOMS = 4000  # from this many atoms a frame's library calls show their own progress


def quench_frame(potential, fr: Frame, quench: QuenchOptions, *, progress: bool = False):
    """(frame with minimised positions, ``mdhess.minimize``'s result), or (fr, None) when not quenching.

    A frame that does not reach ``--fmax`` is kept with a notice (its max force is recorded)."""
    if not quench.enabled:
        return fr, None
    from ..pair._minimize import minimize

    try:
        q = minimize(
            potential, fr.positions, box=fr.box, species=fr.species, method=quench.method, fmax=quench.fmax,
            maxiter=quench.maxiter, progress=progress, warn=False,
        )  # fmt: skip
    except InputError as exc:
        raise InputError(f"frame {fr.index}: --quench: {exc}") from None
    if not q.converged:
        note(
            f"frame {fr.index}: --quench did not converge: max force {q.max_force:.3g} > --fmax {quench.fmax:g} "
            f"after {q.iterations} steps (a hard cutoff stalls minimisers: use a C2 switch, docs/quench.md)"
        )
    return replace(fr, positions=q.positions), q


def hessian_with_status(source, fr: Frame, fmt: str, dtype: str, detail: bool, prepared=None):
    """``source.hessian(fr, fmt, dtype, prepared=prepared)``, with its time on stderr when
    ``detail`` (huge frames)."""
    from .._progress import Status

    with Status(detail, f"frame {fr.index}") as st:
        st.phase(f"{fmt} Hessian of {fr.positions.shape[0]} atoms")
        return source.hessian(fr, fmt, dtype, prepared=prepared)


# -- frames in -------------------------------------------------------------------------------------
def _potential_words(spec) -> str:
    return f"the potential {spec.name!r} ({spec.units} units, lengths in {spec.length_unit})"


def length_scale(traj, spec, override: float | None) -> float:
    """Factor that converts the file's lengths into the potential's length unit.

    The rules (docs/cli.md): ``--length-scale`` wins. A reduced ("lj") potential takes lengths as
    they are from a file that declares no unit or a reduced one (MDTraj's fixed "nanometers" is
    the layout's convention, not a statement); a file that declares a physical length is an
    error. A metal or real potential (Angstrom) converts a declared length unit, refuses a
    declared unit that is not a recognised length, and takes an undeclared one as Angstrom
    (``unit_notice`` words the notice the commands show for that).
    """
    if override is not None:
        if not (np.isfinite(override) and override > 0):
            raise InputError(f"--length-scale must be a finite number > 0; got {override}")
        return float(override)
    unit = traj.length_unit
    if spec.units == "lj":
        if unit is None or is_reduced_unit(unit) or traj.unit_by_convention:
            return 1.0
        if length_factor(unit) is not None:
            raise InputError(
                f"{traj.path}: positions are in {unit!r}, a physical length, but {_potential_words(spec)} "
                f"is in reduced units; pass --length-scale (sigma per {unit}) or use a metal or real potential"
            )
        raise InputError(
            f"{traj.path}: position unit {unit!r} is not recognised; pass --length-scale (factor to sigma "
            f"for {_potential_words(spec)})"
        )
    if unit is None:
        return 1.0
    f = length_factor(unit)
    if f is None:
        kind = "reduced, not a physical length" if is_reduced_unit(unit) else "not recognised"
        raise InputError(
            f"{traj.path}: position unit {unit!r} is {kind}; pass --length-scale (factor to "
            f"{spec.length_unit} for {_potential_words(spec)})"
        )
    return f  # metal and real units measure lengths in Angstrom


def unit_notice(traj, spec, override: float | None) -> str | None:
    """The one-line notice for lengths taken in the potential's unit because the file declares
    none (metal and real potentials only: for reduced ones that is the normal case), or None."""
    if override is not None or spec.units == "lj" or traj.length_unit is not None:
        return None
    return (
        f"positions of {traj.path} declare no unit; taken as {spec.length_unit}, the length unit of the "
        f"potential {spec.name!r} ({spec.units} units)"
    )


def resolve_species(traj, spec, ignore: bool):
    """The file's per-atom species as indices into the potential's tables (None: no species and
    a one-species potential), checked against the potential; zeros when ``ignore``.

    Rules: a potential with one species takes a file without species, or one whose atoms are
    all species 0; several species in the file need ``--ignore-species``. A potential with S >= 2
    species needs species from the file, every index below S.
    """
    if ignore:
        return np.zeros(traj.n_atoms, dtype=np.int32)
    s = traj.species_indices(spec.species)
    check_species(s, spec, traj.path)
    return s


def check_species(s, spec, where: str) -> None:
    """Raises InputError when the species ``s`` (None or (N,) ints) do not fit the potential."""
    S = spec.species_count
    if s is None:
        if S > 1:
            raise InputError(
                f"{where} gives no species but the potential {spec.name!r} has {spec.species_label()}; add "
                "per-atom species to the file, or pass --ignore-species to make every atom species 0"
            )
        return
    present = np.unique(s)
    shown = present[:8].tolist() + (["..."] if present.size > 8 else [])
    if S == 1 and present.size > 1:
        raise InputError(
            f"{where} has {present.size} species {shown} but the potential {spec.name!r} has {spec.species_label()}; "
            "pass --ignore-species to treat every atom as species 0"
        )
    if present.size and present[-1] >= S:
        a = int(np.argmax(np.asarray(s) >= S))
        hint = "; pass --ignore-species to treat every atom as species 0" if S == 1 else ""
        raise InputError(
            f"{where} has species index {int(present[-1])} (atom {a}; {present.size} species {shown} in the file) "
            f"but the potential {spec.name!r} has {spec.species_label()}, indices 0..{S - 1}{hint}"
        )


def estimated_pairs(traj, spec, scale: float) -> int:
    """Interacting pairs expected from the declared size: N/2 x density x cutoff sphere in a
    periodic box; all pairs without a cutoff; 0 (a lower bound) in free space, whose density
    is not known before the positions are read."""
    N = traj.n_atoms
    rc = spec.max_cutoff
    if rc is None:
        return N * (N - 1) // 2
    box = traj.box(0) if traj.periodic else None
    if box is None:
        return 0
    volume = abs(float(np.linalg.det(box * scale)))
    if not volume > 0:
        return 0
    return int(min(0.5 * N * (N / volume) * (4.0 / 3.0) * np.pi * rc**3, 1e18))


def check_declared_size(traj, spec, scale: float, fmt: str, dtype: str) -> None:
    """Refuse, before any frame is read, an input whose declared size cannot fit: one frame's
    positions plus the planner's estimate of one Hessian (pairs from density and cutoff)."""
    from ..pair._planner import estimate_memory, memory_limit

    n_pairs = estimated_pairs(traj, spec, scale)
    all_pairs = spec.max_cutoff is None and not spec.needs_reference and not traj.periodic
    plan = estimate_memory(traj.n_atoms, n_pairs, format=fmt, dtype=dtype, all_pairs=all_pairs)
    total = traj.frame_nbytes + plan.total_bytes
    limit = memory_limit()
    if total > limit:
        raise MemoryPlanError(
            f"{traj.path}: positions declared with shape {traj.declared_shape} need about {format_bytes(total)} "
            f"(a frame {format_bytes(traj.frame_nbytes)}; {plan}), more than the memory limit of "
            f"{format_bytes(limit)}; refused before reading any frame (MDHESS_MEMORY_LIMIT sets the limit)"
        )


class TrajectorySource:
    """Frames of a trajectory scaled to the potential's units, with species and masses resolved,
    and the potential built (elastic networks: from ``source.reference_frame``).

    Args:
        traj: an open ``mdhess.io.Trajectory``.
        spec: the potential's specification (``load_spec``).
        source: how the frames are read (length scale, reference frame, species).
        fmt, dtype: the Hessians to be computed (for the size check made before any frame is read).
        announce: show the one-time notices (False in the workers of ``--processes``).
    """

    def __init__(self, traj, spec, source: SourceOptions, *, fmt: str, dtype: str, announce: bool = True):
        self.traj, self.spec = traj, spec
        self.scale = length_scale(traj, spec, source.length_scale_override)
        check_declared_size(traj, spec, self.scale, fmt, dtype)
        self.ignore_species = source.ignore_species
        self.species = resolve_species(traj, spec, source.ignore_species)
        notice = unit_notice(traj, spec, source.length_scale_override)
        if notice and announce:  # workers of --processes leave it to the parent
            note(notice)
        self.potential = None
        if spec.needs_reference:
            ref = self.frame(source.reference_frame)
            self.potential = spec.build(positions=ref.positions, box=ref.box)
        else:
            self.potential = spec.build()

    def frame(self, k: int) -> Frame:
        """Source frame ``k`` as the potential sees it."""
        fr = self.traj[k]
        s = self.species
        if self.traj.has_time_dependent_species and not self.ignore_species:
            s = fr.species
            check_species(s, self.spec, f"{self.traj.path} frame {k}")
        box = None if fr.box is None else fr.box * self.scale
        masses = fr.masses if fr.masses is not None else self.spec.atom_masses(s, self.traj.n_atoms)
        return Frame(k, fr.positions * self.scale, box, s, masses, fr.time)

    def prepare(self, fr: Frame, fmt: str, dtype: str):
        """The host half of frame ``fr``'s Hessian (checks, pair list, memory plan: a
        ``PreparedHessian``, no JAX work); errors name the frame."""
        from ..pair._api import prepare_hessian

        try:
            return prepare_hessian(self.potential, fr.positions, box=fr.box, species=fr.species, format=fmt, dtype=dtype)
        except (InputError, FloatingPointError) as exc:
            raise InputError(f"frame {fr.index}: {exc}") from None

    def hessian(self, fr: Frame, fmt: str, dtype: str, devices=None, prepared=None):
        """The Hessian of frame ``fr``; errors name the frame. With ``devices`` (``--distributed``,
        fewer frames than processes) every process computes the block rows of its devices, and
        the matrix is gathered. ``prepared``: the frame's ``prepare`` (made ahead, on another
        thread), or None."""
        import mdhess

        try:
            if prepared is not None:
                return prepared.compute()
            if devices is not None:
                H = mdhess.hessian(self.potential, fr.positions, box=fr.box, species=fr.species, format="bsr",
                                   dtype=dtype, devices=devices).to_bsr()  # fmt: skip
                return H if fmt == "bsr" else H.toarray()
            return mdhess.hessian(self.potential, fr.positions, box=fr.box, species=fr.species, format=fmt, dtype=dtype)
        except (InputError, FloatingPointError) as exc:
            raise InputError(f"frame {fr.index}: {exc}") from None


# -- the frame loop shared by both jobs ------------------------------------------------------------
class Computed(NamedTuple):
    """One computed frame, ready to be written."""

    slot: int  # position in the output file
    frame: Frame  # the frame as used
    result: object  # the frame's Hessian, or (NormalModes, thermodynamics or None)
    started: float  # time.perf_counter() when its work began
    quench: object = None  # the frame's minimisation (mdhess.minimize's result), or None


def array_bytes(obj, depth: int = 0) -> int:
    """Bytes of the arrays inside ``obj`` (numpy/JAX arrays, scipy sparse matrices, tuples, lists,
    dicts and the attributes of plain objects, a few levels deep): a computed frame's size, which
    the writer checks the disk has room for before writing it."""
    if depth > 4 or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return 0
    if hasattr(obj, "nbytes") and hasattr(obj, "shape"):
        return int(obj.nbytes)
    if hasattr(obj, "tocsr") and hasattr(obj, "data"):  # scipy sparse
        return sum(int(getattr(obj, a).nbytes) for a in ("data", "indices", "indptr") if hasattr(obj, a))
    if isinstance(obj, dict):
        return sum(array_bytes(v, depth + 1) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return sum(array_bytes(v, depth + 1) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(array_bytes(v, depth + 1) for v in vars(obj).values())
    return 0


class WriterThread:
    """Writes computed frames in a background thread while the next ones are computed (the
    checksum, compression and HDF5 writes of a frame overlap the next frame's compute: hashlib,
    zlib and JAX release the GIL). At most one frame waits in the queue.

    ``put(item)`` hands a frame over; ``close()`` waits for every frame handed over to be
    written. An error in the thread (a full disk, a Ctrl-C injected into a write) is raised
    again, as the same exception, by the next ``put`` or by ``close``: a frame is never
    reported written unless it was.
    """

    def __init__(self, writer, write: Callable, source_frames, progress, summary: list):
        import queue
        import threading

        self.writer, self.write, self.source_frames = writer, write, source_frames
        self.progress, self.summary = progress, summary
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="mdhess-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None or self.error is not None:
                if item is None:
                    return
                continue  # after an error: drain, write nothing more
            try:
                self.writer.write_frame(item.slot, functools.partial(self.write, computed=item), nbytes=array_bytes(item))
                k = self.source_frames[item.slot]
                self.summary.append({"frame": k, "seconds": time.perf_counter() - item.started})
                self.progress.update(f"frame {k}")
            except BaseException as exc:  # handed to the main thread
                self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, item) -> None:
        self._raise()
        self.queue.put(item)

    def close(self) -> None:
        """Write what was handed over, stop the thread; raises the thread's error, if any."""
        self.queue.put(None)
        self.thread.join()
        self._raise()


def run_frames(
    output, kind: str, settings: dict, source_frames: list, options: RunOptions, *,
    compute: Callable[[list], Iterator[Computed]], write: Callable, attrs: Callable[[], dict],
    shared: Callable[[list, list], Iterator[Computed]] | None = None,
) -> tuple[int, list]:  # fmt: skip
    """Compute the pending frames of a result file and write each one as it is finished.

    Opens the crash-safe writer (``mdhess.io.ResultRun``: resumes or replaces as ``options``
    say), shows progress, writes each frame as it comes (``WriterThread``) and finishes the
    file. A run that fails before its first frame is written leaves no ``OUTPUT.partial`` behind.

    Args:
        output: the output file.
        kind: "hessian" or "modes" (also the progress label).
        settings: what fixes the results; a resumed run must have the same.
        source_frames: the source frame of each output slot.
        options: resume, overwrite, quiet.
        compute: ``compute(pending slots)`` yields a ``Computed`` per slot, in that order.
        write: ``write(group, computed)`` fills the frame's group.
        attrs: ``attrs()`` gives the file's root attributes; called after the last frame.
        shared: ``options.distributed`` with fewer pending frames than processes (one huge
            frame): ``shared(slots, devices)`` computes each slot with every process taking part
            (sharded over ``devices``, all of JAX's devices); None: one process per frame.

    Returns:
        (number of frames computed, [{"frame": source frame, "seconds": ...} per computed frame]).

    Raises:
        InputError: an existing output without overwrite or resume, a resumed run with other
            settings, or bad input met while computing.
    """
    if options.distributed:
        return _run_frames_distributed(output, kind, settings, source_frames, options, compute=compute, write=write,
                                       attrs=attrs, shared=shared)  # fmt: skip
    run = ResultRun(output, kind, settings, source_frames, resume=options.resume, overwrite=options.overwrite, note=note)
    todo = run.pending()
    if run.already_complete:
        note(f"{output} is already complete; nothing to do")
    n = len(source_frames)
    progress = Progress(n, n - len(todo), quiet=options.quiet, label=kind)
    summary: list = []
    writer = WriterThread(run, write, source_frames, progress, summary)
    try:
        try:
            for item in compute(todo):
                writer.put(item)
        finally:  # the frames computed before an error or Ctrl-C are written, then the error stands
            writer.close()
    except BaseException:
        run.discard_if_empty()
        raise
    finally:
        progress.close()
    run.finish(attrs())
    return len(todo), summary


def _run_frames_distributed(output, kind, settings, source_frames, options: RunOptions, *, compute, write, attrs,
                            shared=None):  # fmt: skip
    """``run_frames`` across the processes of JAX's distributed runtime (``--distributed``).

    Process 0 opens the run (lock, resume, carry-over) and tells every process which slots are
    pending (``broadcast_one_to_all``); process r computes every P-th of them, r first, and
    writes them once: process 0 into the work file, the others into their part files in
    OUTPUT.partial (a file system every process sees). When all are done
    (``process_allgather`` of their status) process 0 merges the parts, each frame verified,
    and finishes the file: the same file a single process writes. A process that fails gives its
    own error; the others exit with one line naming it; the finished frames are kept for
    ``--resume`` (run by the same processes or by one).
    """
    import jax
    from jax.experimental import multihost_utils

    from ..io._results import ResultPart

    rank, size = jax.process_index(), jax.process_count()
    n = len(source_frames)
    run, failure = None, None
    flags = np.zeros(n + 1, np.int32)  # [ok, pending per slot]
    if rank == 0:
        try:
            run = ResultRun(output, kind, settings, source_frames, resume=options.resume, overwrite=options.overwrite,
                            note=note)  # fmt: skip
            if run.already_complete:
                note(f"{output} is already complete; nothing to do")
            flags[0] = 1
            flags[1 + np.asarray(run.pending(), dtype=np.int64)] = 1
        except BaseException as exc:  # told to the others first, raised below
            failure = exc
    flags = np.asarray(multihost_utils.broadcast_one_to_all(flags))
    if not flags[0]:
        if failure is not None:
            raise failure
        raise InputError(f"process 0 could not start the run on {output} (see its message); nothing was computed")
    todo = np.flatnonzero(flags[1:]).tolist()
    together = shared is not None and 0 < len(todo) < size  # one huge frame: every process works on each
    mine = todo if together else todo[rank::size]
    if together:
        devices = jax.devices()
        compute = functools.partial(shared, devices=devices)
        if rank == 0:
            note(f"{len(todo)} frame(s) for {size} processes: each frame sharded over all {len(devices)} devices")
    writer = run if rank == 0 else ResultPart(output, kind, settings, source_frames, rank)
    progress = Progress(len(mine), 0, quiet=options.quiet, label=kind if size == 1 else f"{kind} [process {rank}/{size}]")
    summary: list = []
    try:
        thread = WriterThread(writer, write, source_frames, progress, summary)
        try:
            for item in compute(mine):
                if together and rank != 0:  # computed with process 0, which writes it
                    continue
                thread.put(item)
        finally:
            thread.close()
    except Exception as exc:  # Ctrl-C and kills stop this process; JAX's runtime then stops the others
        failure = exc
    finally:
        progress.close()
        if rank != 0:
            writer.close()
    status = np.asarray(multihost_utils.process_allgather(np.array([failure is None], np.int32))).reshape(-1)
    failed = [r for r in range(size) if not status[r]]
    if failed:
        if run is not None:
            run.close()  # the frames are kept for --resume
        if failure is not None:
            raise failure
        raise InputError(
            f"process{'es' if len(failed) > 1 else ''} {', '.join(map(str, failed))} failed (see "
            f"{'their messages' if len(failed) > 1 else 'its message'}); finished frames are kept: rerun with --resume"
        )
    done = 1
    if rank == 0:
        try:
            run.merge_parts(range(1, size))
            run.finish(attrs())
        except BaseException as exc:
            run.close()
            failure, done = exc, 0
    done = int(np.asarray(multihost_utils.broadcast_one_to_all(np.array([done], np.int32))).reshape(-1)[0])
    if failure is not None:
        raise failure
    if not done:
        raise InputError(f"process 0 could not finish {output} (see its message); finished frames are kept: rerun with --resume")
    return (len(todo) if rank == 0 else len(mine)), summary  # process 0 reports the run's total


# -- hessian ---------------------------------------------------------------------------------------
def _check_hessian_args(format, dtype, compression, batch_frames) -> None:
    check_choice(format, HESSIAN_FORMATS, label="--format")
    check_choice(dtype, HESSIAN_DTYPES, label="--dtype")
    check_choice(compression, HESSIAN_COMPRESSIONS, label="--compression")
    if isinstance(batch_frames, bool) or not isinstance(batch_frames, (int, np.integer)) or batch_frames < 0:
        raise InputError(f"--batch-frames must be an integer >= 0 (0: automatic); got {batch_frames!r}")


def _batching(batch_frames: int) -> bool:
    if batch_frames >= 1:
        return True
    import jax

    return jax.default_backend() != "cpu"  # on a CPU one frame at a time is as fast


def _hessians(source: TrajectorySource, sel, todo, fmt, dtype, batch_frames, quench: QuenchOptions,
              detail: bool) -> Iterator[Computed]:  # fmt: skip
    """The Hessian of each pending slot, in order: one frame at a time, or in batches read one
    frame at a time (``hessian_stream``) when batching is on; each frame minimised first with
    ``--quench``."""
    if not _batching(batch_frames):
        if not quench.enabled and len(todo) > 1 and source.traj.n_atoms <= PREFETCH_MAX_ATOMS:
            yield from _hessians_ahead(source, sel, todo, fmt, dtype, detail)
            return
        for slot in todo:
            ts = time.perf_counter()
            fr, q = quench_frame(source.potential, source.frame(sel[slot]), quench, progress=detail)
            yield Computed(slot, fr, hessian_with_status(source, fr, fmt, dtype, detail), ts, q)
        return
    from ..pair._batch import hessian_stream

    def items():
        for slot in todo:
            fr, q = quench_frame(source.potential, source.frame(sel[slot]), quench, progress=detail)
            yield fr.index, fr.positions, fr.box, fr.species, (slot, fr, q)

    ts = time.perf_counter()
    stream = hessian_stream(
        source.potential, items(), format=fmt, dtype=dtype, batch_size=batch_frames or None, call="hessian"
    )
    try:
        for (slot, fr, q), H in stream:
            yield Computed(slot, fr, H, ts, q)
            ts = time.perf_counter()  # a batched frame's time: from the previous frame's write on
    except (InputError, FloatingPointError) as exc:
        raise InputError(str(exc)) from None  # already "frame K: ..."


PREFETCH_MAX_ATOMS = 50_000
"""Frames of up to this many atoms are read and prepared (checks, pair list, memory plan) one
frame ahead on a second thread while the current frame's blocks are computed (``_hessians_ahead``;
not with ``--quench``, whose minimisation comes first). Larger frames gain little from it and
would hold a second pair list beside the Hessian their memory plan counts."""


def _hessians_ahead(source: TrajectorySource, sel, todo, fmt, dtype, detail: bool) -> Iterator[Computed]:
    """``_hessians`` without batching or quenching, the next frame read and prepared (numpy and
    the neighbour list, which release the GIL) on a thread while this one's blocks are computed
    and the one before is written: a frame of 2000 atoms is ~10 ms of list against ~15 ms of
    blocks (docs/benchmarks.md, Command line). A frame's error is raised after the frames
    before it were handed over, as without the thread."""
    from concurrent.futures import ThreadPoolExecutor

    def prepare(slot):
        fr = source.frame(sel[slot])
        return fr, source.prepare(fr, fmt, dtype)

    with ThreadPoolExecutor(1, thread_name_prefix="mdhess-prepare") as pool:
        nxt = pool.submit(prepare, todo[0])
        ts = time.perf_counter()
        for n, slot in enumerate(todo):
            fr, prepared = nxt.result()
            nxt = pool.submit(prepare, todo[n + 1]) if n + 1 < len(todo) else None
            yield Computed(slot, fr, hessian_with_status(source, fr, fmt, dtype, detail, prepared=prepared), ts)
            ts = time.perf_counter()


def hessian_worker(input, potential, source: SourceOptions, fmt, dtype, quench: QuenchOptions, sel) -> Callable:
    """In a worker process of ``--processes``: the input opened and checked, the potential built;
    returns ``slot -> Computed`` (one frame, no batching, no progress of its own)."""
    from ..pair._library import load_spec

    spec = load_spec(potential)
    traj = source.open(input)  # open for the worker's lifetime
    tsrc = TrajectorySource(traj, spec, source, fmt=fmt, dtype=dtype, announce=False)
    return functools.partial(hessian_of_slot, tsrc, sel, fmt, dtype, quench)


def hessian_of_slot(tsrc: TrajectorySource, sel, fmt, dtype, quench: QuenchOptions, slot: int, devices=None) -> Computed:
    """One slot's frame (minimised first with ``--quench``) and its Hessian (``devices``: shared
    by every process, ``TrajectorySource.hessian``)."""
    ts = time.perf_counter()
    fr, q = quench_frame(tsrc.potential, tsrc.frame(sel[slot]), quench)
    return Computed(slot, fr, tsrc.hessian(fr, fmt, dtype, devices), ts, q)


def run_hessian(
    input, potential, output, *, format="dense", dtype="float64", compression="auto", batch_frames=0,
    source: SourceOptions | None = None, options: RunOptions | None = None, quench: QuenchOptions | None = None,
) -> JobResult:  # fmt: skip
    """Hessians of the selected frames of a trajectory, written to ``output``.

    Args:
        input: the trajectory (H5MD, MDTraj or minimal layout).
        potential: a named potential or a .toml file.
        output: the Hessian file to write.
        format: one of ``HESSIAN_FORMATS``.
        dtype: one of ``HESSIAN_DTYPES``.
        compression: one of ``mdhess.io``'s ``HESSIAN_COMPRESSIONS``.
        batch_frames: 0 batches frames (``jax.vmap``, as many as the memory planner allows) only
            off the CPU, where it pays; N >= 1 computes N frames per call on any backend.
        source: frames, particle group, reference frame, length scale (default: ``SourceOptions()``).
        options: resume, overwrite, quiet (default: ``RunOptions()``).
        quench: minimise each frame first (default: no); the minimised positions and the final
            max force are stored with the frame.

    Returns:
        ``JobResult``; its summary has frame, seconds and n_atoms per computed frame.

    Raises:
        InputError: bad arguments, input or potential; an existing output (see ``run_frames``).
    """
    from ..pair._library import load_spec

    source, options, quench = source or SourceOptions(), options or RunOptions(), quench or QuenchOptions()
    _check_hessian_args(format, dtype, compression, batch_frames)
    quench.check()
    options.check()
    if batch_frames >= 1 and options.processes != 1:
        raise InputError(
            f"--batch-frames {batch_frames} and --processes {options.processes} exclude each other: "
            "workers compute one frame at a time"
        )
    spec = load_spec(potential)
    t0 = time.perf_counter()
    with source.open(input) as traj:
        sel = parse_frames(source.frames, traj.n_frames)
        tsrc = TrajectorySource(traj, spec, source, fmt=format, dtype=dtype)
        settings = {
            **input_identity(input),
            **source.settings(),
            "group": traj.group,
            "layout": traj.layout,
            "potential": spec.to_dict(),
            "potential_resolved": tsrc.potential.describe(),
            "format": format,
            "dtype": dtype,
            "compression": compression,
            "length_scale": tsrc.scale,
            "reference_frame": source.reference_frame if spec.needs_reference else None,
            **quench.settings(),
        }
        attrs = {
            "format": format,
            "dtype": dtype,
            "n_atoms": traj.n_atoms,
            "potential": spec.to_dict(),
            "potential_name": spec.name,
            "units": spec.units,
            "source_file": os.path.abspath(input),
            "source_layout": traj.layout,
            "source_group": traj.group or "",
            "source_length_unit": traj.length_unit or "",
            "length_scale": tsrc.scale,
            "ignore_species": bool(source.ignore_species),
        }

        def write(group, computed: Computed):
            write_hessian_frame(group, computed.frame, computed.result, compression=compression, quench=computed.quench)

        detail = not options.quiet and (len(sel) == 1 or traj.n_atoms >= LONG_FRAME_ATOMS)

        def compute(todo):
            if options.workers(len(todo)) > 1:
                from ._pool import compute_in_processes

                job = functools.partial(hessian_worker, str(input), potential, source, format, dtype, quench, sel)
                here = functools.partial(hessian_of_slot, tsrc, sel, format, dtype, quench)
                return compute_in_processes(job, here, todo, options.workers(len(todo)))
            return _hessians(tsrc, sel, todo, format, dtype, batch_frames, quench, detail)

        def shared(todo, devices):
            return (hessian_of_slot(tsrc, sel, format, dtype, quench, slot, devices) for slot in todo)

        n_computed, summary = run_frames(
            output, "hessian", settings, sel, options, write=write, attrs=lambda: attrs, compute=compute, shared=shared
        )
        for s in summary:
            s["n_atoms"] = traj.n_atoms
    return JobResult(str(output), len(sel), n_computed, time.perf_counter() - t0, summary)


# -- modes -----------------------------------------------------------------------------------------
def _check_modes_args(k, units, thermo: ThermoOptions, plot, solver="auto", precision="float64") -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"-k must be a positive integer; got {k!r}")
    check_choice(precision, ("float64", "mixed"), label="--precision")
    if precision == "mixed" and solver != "jax-lobpcg":
        raise InputError(f"--precision mixed needs --solver jax-lobpcg (its float32 products); got --solver {solver}")
    if units is not None:
        check_choice(units, tuple(UNIT_SYSTEMS), label="--units")
    thermo.check()
    if plot is not None and not os.path.isdir(os.path.dirname(os.path.abspath(plot))):
        raise InputError(f"--plot folder {os.path.dirname(os.path.abspath(plot))!r} does not exist")


@dataclass
class ModesInput:
    """What the modes job reads: frames with their Hessians, from a Hessian file or a trajectory.

    Attributes:
        n_frames, n_atoms: of the input.
        units: the input's unit system name (its potential's), None when unknown.
        identity: the settings that identify the input (file, source kind, potential, ...).
        frame: ``frame(k)`` -> (Frame, Hessian, quench record or None) of source frame ``k``.
        close: closes the input.
    """

    n_frames: int
    n_atoms: int
    units: str | None
    identity: dict
    frame: Callable[[int], tuple]
    close: Callable[[], None]
    operator: Callable | None = None  # (k, devices) -> (Frame, sharded operator, quench): --distributed, one frame


def _check_units(units, input_units, where: str) -> None:
    """An explicit ``--units`` must be the input's: the Hessian's numbers are in those units."""
    if units is not None and input_units is not None and units != input_units:
        raise InputError(
            f"--units {units} contradicts the units {where} ({input_units}): the Hessian is in {input_units} "
            f"units, and reading it as {units} would give wrong frequencies; leave out --units"
        )


def _hessian_file_input(input, potential, units, quench: QuenchOptions) -> ModesInput:
    if potential is not None:
        raise InputError(f"--potential is not used with a Hessian file input ({input}); it records its potential")
    if quench.enabled:
        raise InputError(
            f"--quench needs a trajectory input; {input} holds Hessians already computed (quench with "
            "mdhess hessian --quench, or pass the trajectory and --potential)"
        )
    src = HessianFrames(input)
    recorded = None if src.units is None else str(src.units)
    try:
        _check_units(units, recorded, f"recorded in {input}")
    except BaseException:
        src.close()
        raise

    def frame(k):
        # modes files made from Hessian files have never stored species (normal modes do not use them)
        # the minimisation of a quenched Hessian file's frame is carried into the modes file
        return replace(src.frame(k), species=None), src.hessian(k), read_quench(src.file, k)

    identity = {**input_identity(input), "source_kind": "hessian", "potential": src.potential}
    return ModesInput(src.n_frames, src.n_atoms, recorded, identity, frame, src.close)


def _trajectory_input(input, potential, source: SourceOptions, units, quench: QuenchOptions, detail,
                      announce: bool = True) -> ModesInput:  # fmt: skip
    from ..pair._library import load_spec

    if potential is None:
        raise InputError(f"--potential is required when INPUT is a trajectory ({input})")
    spec = load_spec(potential)
    _check_units(units, spec.units, f"of the potential {spec.name!r}")
    traj = source.open(input)
    fmt = "dense" if traj.n_atoms <= MODES_DENSE_MAX_ATOMS else "bsr"
    try:
        tsrc = TrajectorySource(traj, spec, source, fmt=fmt, dtype="float64", announce=announce)
    except BaseException:
        traj.close()
        raise
    identity = {
        **input_identity(input), **source.settings(), "source_kind": "trajectory", "group": traj.group, "potential": spec.to_dict(),
        "potential_resolved": tsrc.potential.describe(), "length_scale": tsrc.scale, "format": fmt,
        "reference_frame": source.reference_frame if spec.needs_reference else None, **quench.settings(),
    }  # fmt: skip

    def frame(k):
        fr, q = quench_frame(tsrc.potential, tsrc.frame(k), quench, progress=detail(traj.n_atoms))
        return fr, hessian_with_status(tsrc, fr, fmt, "float64", detail(traj.n_atoms)), q

    def operator(k, devices):
        import mdhess

        fr, q = quench_frame(tsrc.potential, tsrc.frame(k), quench, progress=detail(traj.n_atoms))
        try:
            op = mdhess.hvp(tsrc.potential, fr.positions, box=fr.box, species=fr.species, dtype="float64", devices=devices)
        except (InputError, FloatingPointError) as exc:
            raise InputError(f"frame {fr.index}: {exc}") from None
        return fr, op, q

    return ModesInput(traj.n_frames, traj.n_atoms, spec.units, identity, frame, traj.close, operator)


def _frequency_unit(nm) -> str:
    return "THz" if nm.units is not None and not nm.units.reduced else "reduced"


class ModesJob:
    """The lowest ``k`` normal modes of the selected frames of an input, frame by frame.

    Args:
        input: the input file's path.
        src: the opened input.
        sel: the source frame of each output slot.
        k, units, solver: as for ``mdhess.normal_modes``.
        thermo: thermodynamics per frame.
    """

    def __init__(self, input, src: ModesInput, sel, *, k, units, solver, thermo: ThermoOptions, progress=False,
                 precision="float64"):  # fmt: skip
        self.input, self.src, self.sel = input, src, sel
        self.k, self.units, self.solver, self.thermo = k, units, solver, thermo
        self.precision = precision
        self.progress = progress  # the solver's own progress (single huge frames)
        self.frequency_unit = None  # of the frames computed by this process

    def settings(self) -> dict:
        t = self.thermo
        out = {**self.src.identity, "k": self.k, "units": self.units, "solver": self.solver,
               "temperature": t.temperature, "hbar": t.hbar, "classical": t.classical}  # fmt: skip
        if self.precision != "float64":  # absent for float64: runs begun before the option resume
            out["precision"] = self.precision
        return out

    def compute(self, todo, devices=None) -> Iterator[Computed]:
        """The modes of each slot; with ``devices`` (``--distributed``, fewer frames than
        processes) every process takes part in each frame through the sharded operator."""
        from .. import normal_modes

        for slot in todo:
            ts = time.perf_counter()
            if devices is not None:
                fr, H, q = self.src.operator(self.sel[slot], devices)
            else:
                fr, H, q = self.src.frame(self.sel[slot])
            try:
                nm = normal_modes(
                    H, fr.masses, k=self.k, which="lowest", project="auto", units=self.units, solver=self.solver,
                    box=fr.box, positions=fr.positions, progress=self.progress, precision=self.precision,
                )  # fmt: skip
            except InputError as exc:
                raise InputError(f"frame {fr.index}: {exc}") from None
            self.frequency_unit = _frequency_unit(nm)
            yield Computed(slot, fr, (nm, self.thermo.of(nm)), ts, q)

    def write(self, group, computed: Computed) -> None:
        modes, thermo = computed.result
        self.frequency_unit = _frequency_unit(modes)  # frames computed by workers of --processes too
        write_modes_frame(group, computed.frame, modes, thermo, quench=computed.quench)

    def attrs(self) -> dict:
        t = self.thermo
        return {
            "k": self.k,
            "units": self.units,
            "frequency_unit": self.frequency_unit or ("reduced" if self.units in (None, "lj") else "THz"),
            "temperature": t.temperature if t.temperature is not None else float("nan"),
            "hbar": t.hbar if t.hbar is not None else float("nan"),
            "classical": bool(t.classical),
            "n_atoms": self.src.n_atoms,
            "source_file": os.path.abspath(self.input),
            "source_kind": self.src.identity["source_kind"],
            "potential": self.src.identity.get("potential"),
        }


def modes_worker(
    input, potential, source: SourceOptions, units, quench: QuenchOptions, k, solver, thermo, sel, precision="float64"
) -> Callable:
    """In a worker process of ``--processes``: the input opened and checked; returns
    ``slot -> Computed`` (one frame's modes, no progress of its own)."""
    if read_file_kind(input) == "hessian":
        src = _hessian_file_input(input, potential, units, quench)
    else:
        src = _trajectory_input(input, potential, source, units, quench, lambda n_atoms: False, announce=False)
    job = ModesJob(input, src, sel, k=k, units=units, solver=solver, thermo=thermo, precision=precision)
    return functools.partial(modes_of_slot, job)


def modes_of_slot(job: ModesJob, slot: int) -> Computed:
    """One slot's modes."""
    return next(iter(job.compute([slot])))


def run_modes(
    input, output, *, k=20, potential=None, units=None, solver="auto", thermo: ThermoOptions | None = None,
    source: SourceOptions | None = None, options: RunOptions | None = None, plot=None, quench: QuenchOptions | None = None,
    csv=None, width: float | None = None, precision: str = "float64",
) -> JobResult:  # fmt: skip
    """Lowest ``k`` normal modes of each selected frame of a trajectory or Hessian file.

    Args:
        input: a trajectory (needs ``potential``) or a Hessian file written by ``run_hessian``.
        output: the modes file to write.
        k: modes per frame.
        potential: named potential or .toml file (trajectory input only).
        units: "lj", "metal" or "real" (default: the input's, its potential's; one that
            contradicts the input's is an error).
        solver: as for ``mdhess.normal_modes``.
        thermo: thermodynamics per frame (default: none).
        source: frames, particle group, reference frame, length scale (default: ``SourceOptions()``).
        options: resume, overwrite, quiet (default: ``RunOptions()``).
        plot: PNG file for the Gaussian-broadened density of states of the modes found (each
            frame and their average), or None.
        quench: minimise each frame first (trajectory input only; default: no).
        csv: CSV file for the frequencies and participation ratios (``write_modes_csv``), or None.
        width: the DOS plot's Gaussian standard deviation, frequency units (None: automatic).
        precision: "float64" or "mixed" (``solver="jax-lobpcg"`` only), as for ``mdhess.normal_modes``.

    Returns:
        ``JobResult``; ``csv_files`` lists the CSV files written.

    Raises:
        InputError: bad arguments or input; an existing output (see ``run_frames``).
    """
    thermo, source, options = thermo or ThermoOptions(), source or SourceOptions(), options or RunOptions()
    quench = quench or QuenchOptions()
    _check_modes_args(k, units, thermo, plot, solver, precision)
    _check_outputs(csv, width)
    quench.check()
    options.check()
    kind = read_file_kind(input)
    t0 = time.perf_counter()
    n_sel = [0]

    def detail(n_atoms):  # single huge frames show their library calls' progress
        return not options.quiet and (n_sel[0] == 1 or n_atoms >= LONG_FRAME_ATOMS)

    if kind == "hessian":
        src = _hessian_file_input(input, potential, units, quench)
    elif kind is None:
        src = _trajectory_input(input, potential, source, units, quench, detail)
    else:
        raise InputError(f"{input!r} is an mdhess {kind} file; modes need a trajectory or a Hessian file")
    try:
        if k > 3 * src.n_atoms:
            raise InputError(f"-k {k} exceeds the number of modes 3N = {3 * src.n_atoms}")
        sel = parse_frames(source.frames, src.n_frames)
        n_sel[0] = len(sel)
        units = units or src.units
        thermo.check_units(units)
        job = ModesJob(input, src, sel, k=k, units=units, solver=solver, thermo=thermo, progress=detail(src.n_atoms),
                       precision=precision)  # fmt: skip

        def compute(todo):
            if options.workers(len(todo)) > 1:
                from ._pool import compute_in_processes

                factory = functools.partial(
                    modes_worker, input, potential, source, units, quench, k, solver, thermo, sel, precision
                )
                here = functools.partial(modes_of_slot, job)
                return compute_in_processes(factory, here, todo, options.workers(len(todo)))
            return job.compute(todo)

        n_computed, summary = run_frames(
            output, "modes", job.settings(), sel, options, compute=compute, write=job.write, attrs=job.attrs,
            shared=None if src.operator is None else job.compute,
        )
    finally:
        src.close()
    lead = not options.distributed or _process_index() == 0  # --distributed: process 0 writes the extras
    if plot is not None and lead:
        plot_dos(output, plot, width=width)
    res = JobResult(str(output), len(sel), n_computed, time.perf_counter() - t0, summary)
    if csv is not None and lead:
        from ..io._export import write_modes_csv

        res.csv_files = write_modes_csv(output, csv)
    return res


def _process_index() -> int:
    import jax

    return jax.process_index()


def _check_outputs(csv, width) -> None:
    if csv is not None and not os.path.isdir(os.path.dirname(os.path.abspath(csv))):
        raise InputError(f"--csv folder {os.path.dirname(os.path.abspath(csv))!r} does not exist")
    if width is not None and not (np.isfinite(width) and width > 0):
        raise InputError(f"--width must be a finite number > 0; got {width}")


DOS_POINTS = 400  # grid points of the plotted density of states


def broadened_dos(spectra, width: float | None = None):
    """(grid (g,), per-frame g(nu) (F, g), width): the Gaussian-broadened density of states of
    each frame's modes (zero modes left out; imaginary ones as negative frequencies) on one grid.

    ``width`` None: 2 % of the frequency range of all frames (at least 1e-12)."""
    from ..modes._thermo import density_of_states

    freqs = [f[f != 0] for f in spectra.frequencies]  # zero (projected) modes are exactly 0
    pooled = np.concatenate(freqs) if freqs else np.zeros(0)
    if pooled.size == 0:
        raise InputError("--plot: no non-zero modes to plot (all modes found are zero modes)")
    lo, hi = float(pooled.min()), float(pooled.max())
    if width is None:
        width = max(0.02 * (hi - lo), 0.02 * max(abs(hi), abs(lo)), 1e-12)
    lo, hi = lo - 3 * width, hi + 3 * width
    rows = []
    for f in freqs:
        if f.size:
            grid, g = density_of_states(f, bins=DOS_POINTS, width=width, fmin=lo, fmax=hi)
        else:
            grid, g = np.linspace(lo, hi, DOS_POINTS), np.zeros(DOS_POINTS)
        rows.append(g)
    return grid, np.asarray(rows), width


def plot_dos(modes_file, png, *, width: float | None = None) -> None:
    """The Gaussian-broadened density of states of the modes found in every frame of a modes
    file (thin lines) and their average over frames (thick), written as a PNG."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("--plot needs matplotlib (pip install 'mdhess[plot]')") from None

    spectra = read_mode_spectra(modes_file)
    grid, g, width = broadened_dos(spectra, width)
    unit, n = spectra.frequency_unit, len(spectra.frequencies)
    fig = Figure(figsize=(5.5, 3.8), dpi=120)  # no pyplot: leaves the caller's backend alone
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if n > 1:
        for row in g:
            ax.plot(grid, row, color="C0", lw=0.6, alpha=0.35)
    ax.plot(grid, g.mean(axis=0), color="C3" if n > 1 else "C0", lw=1.8, label=f"average of {n} frames" if n > 1 else None)
    if n > 1:
        ax.legend(fontsize=8)
    u = f" ({unit})" if unit else ""
    ax.set_xlabel(f"frequency{u}")
    ax.set_ylabel(f"g (modes / {unit or 'frequency unit'})")
    ax.set_title(f"DOS of the lowest modes, Gaussian width {width:.3g}{u}; zero modes left out", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(png), format="png")

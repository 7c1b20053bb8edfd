"""The work behind ``mdhess hessian`` and ``mdhess modes``: stream frames, compute, write each
finished frame crash-safely (``mdhess.io.ResultRun``). Used by the commands, the demo and the
benchmark; raises ``InputError`` for bad input (the commands turn it into exit code 2)."""

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .._errors import InputError
from ._common import Progress, note, parse_frames

FORMATS = ("dense", "bsr")
DTYPES = ("float64", "float32")
COMPRESSIONS = ("auto", "gzip", "none")


@dataclass
class JobResult:
    output: str
    n_frames: int
    computed: int
    seconds: float
    summary: list = field(default_factory=list)  # per computed frame: dict


def length_scale(traj, spec, override: float | None) -> float:
    """Factor that converts the file's lengths into the potential's length unit."""
    from ..io import length_factor

    if override is not None:
        if not (np.isfinite(override) and override > 0):
            raise InputError(f"--length-scale must be a finite number > 0; got {override}")
        return float(override)
    if spec.units == "lj" or traj.length_unit is None:
        return 1.0  # reduced units, or a file that declares none: lengths are taken as they are
    f = length_factor(traj.length_unit)
    if f is None:
        raise InputError(
            f"{traj.path}: position unit {traj.length_unit!r} is not recognised; pass --length-scale "
            f"(factor to Angstrom for the {spec.units!r} potential)"
        )
    return f  # metal and real units measure lengths in Angstrom


def _input_identity(path) -> dict:
    st = os.stat(path)
    return {"input": os.path.abspath(path), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}


class _Source:
    """Frames of a trajectory, scaled to the potential's units, with species and masses resolved."""

    def __init__(self, traj, spec, scale, reference_frame):
        self.traj, self.spec, self.scale = traj, spec, scale
        self.species = traj.species_indices(spec.species)
        self.potential = None
        if spec.needs_reference:
            ref = self.frame(reference_frame)
            self.potential = spec.build(positions=ref["positions"], box=ref["box"])
        else:
            self.potential = spec.build()

    def frame(self, k) -> dict:
        fr = self.traj[k]
        s = fr.species if self.traj.has_time_dependent_species else self.species
        box = None if fr.box is None else fr.box * self.scale
        masses = fr.masses if fr.masses is not None else self.spec.atom_masses(s, self.traj.n_atoms)
        return {"positions": fr.positions * self.scale, "box": box, "species": s, "masses": masses, "index": k}


def _write_frame_common(g, fr):
    from ..io._results import dataset

    dataset(g, "positions", fr["positions"])
    if fr["box"] is not None:
        g.create_dataset("box", data=fr["box"])
    if fr["species"] is not None:
        dataset(g, "species", np.asarray(fr["species"], np.int32))
    if fr["masses"] is not None:
        dataset(g, "masses", fr["masses"])


def _write_hessian(g, H, compression="auto"):
    """Dense Hessians and index arrays are gzip-compressed; BSR block values only with
    compression="gzip" (they are dense floats: measured 15% smaller for 4x the compute time)."""
    import scipy.sparse

    from ..io._results import dataset

    on = compression != "none"

    if scipy.sparse.issparse(H):
        h = g.create_group("hessian")
        h.attrs["format"] = "bsr"
        h.attrs["shape"] = np.asarray(H.shape, dtype=np.int64)
        h.attrs["blocksize"] = np.asarray(H.blocksize, dtype=np.int64)
        dataset(h, "data", H.data, compress=compression == "gzip")
        dataset(h, "indices", H.indices, compress=on)
        dataset(h, "indptr", H.indptr, compress=on)
    else:
        dataset(g, "hessian", np.asarray(H), compress=on)


def _frame_error(k, exc):
    return InputError(f"frame {k}: {exc}")


def compute_hessian(source, fr, fmt, dtype):
    import mdhess

    try:
        return mdhess.hessian(
            source.potential, fr["positions"], box=fr["box"], species=fr["species"], format=fmt, dtype=dtype
        )
    except (InputError, FloatingPointError) as exc:
        raise _frame_error(fr["index"], exc) from None


def _batching(batch_frames: int) -> bool:
    if batch_frames >= 1:
        return True
    import jax

    return jax.default_backend() != "cpu"  # on a CPU one frame at a time is as fast


def _hessians(source, sel, todo, fmt, dtype, batch_frames):
    """(slot, frame, H, start time) for each pending slot, in order: one frame at a time, or in
    batches read one at a time (mdhess.pair._batch) when batching is on."""
    if not _batching(batch_frames):
        for slot in todo:
            ts = time.perf_counter()
            fr = source.frame(sel[slot])
            yield slot, fr, compute_hessian(source, fr, fmt, dtype), ts
        return
    from ..pair._batch import hessian_stream

    def items():
        for slot in todo:
            fr = source.frame(sel[slot])
            yield fr["index"], fr["positions"], fr["box"], fr["species"], (slot, fr)

    ts = time.perf_counter()
    stream = hessian_stream(
        source.potential, items(), format=fmt, dtype=dtype, batch_size=batch_frames or None, call="hessian"
    )
    try:
        for (slot, fr), H in stream:
            yield slot, fr, H, ts
            ts = time.perf_counter()  # a batched frame's time: from the previous frame's write on
    except (InputError, FloatingPointError) as exc:
        raise InputError(str(exc)) from None  # already "frame K: ..."


def run_hessian(
    input, potential, output, *, frames=None, format="dense", dtype="float64", compression="auto", group=None, resume=False,
    overwrite=False, reference_frame=0, length_scale_override=None, quiet=False, batch_frames=0,
) -> JobResult:  # fmt: skip
    """Hessians of the selected frames of a trajectory, written to ``output``.

    ``batch_frames``: 0 batches frames (``jax.vmap``, as many as the memory planner allows) only
    off the CPU, where it pays; N >= 1 computes N frames per call on any backend."""
    from ..pair._library import load_spec
    from ..io import ResultRun, read_trajectory

    if format not in FORMATS:
        raise InputError(f"--format must be one of {FORMATS}; got {format!r}")
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {DTYPES}; got {dtype!r}")
    if compression not in COMPRESSIONS:
        raise InputError(f"--compression must be one of {COMPRESSIONS}; got {compression!r}")
    if isinstance(batch_frames, bool) or not isinstance(batch_frames, (int, np.integer)) or batch_frames < 0:
        raise InputError(f"--batch-frames must be an integer >= 0 (0: automatic); got {batch_frames!r}")
    spec = load_spec(potential)
    t0 = time.perf_counter()
    with read_trajectory(input, group=group) as traj:
        sel = parse_frames(frames, traj.n_frames)
        scale = length_scale(traj, spec, length_scale_override)
        source = _Source(traj, spec, scale, reference_frame)
        settings = {
            **_input_identity(input),
            "group": traj.group,
            "layout": traj.layout,
            "potential": spec.to_dict(),
            "potential_resolved": source.potential.describe(),
            "format": format,
            "dtype": dtype,
            "compression": compression,
            "length_scale": scale,
            "reference_frame": reference_frame if spec.needs_reference else None,
        }
        run = ResultRun(output, "hessian", settings, sel, resume=resume, overwrite=overwrite, note=note)
        todo = run.pending()
        if run.already_complete:
            note(f"{output} is already complete; nothing to do")
        progress = Progress(len(sel), len(sel) - len(todo), quiet=quiet, label="hessian")
        summary = []
        try:
            for slot, fr, H, ts in _hessians(source, sel, todo, format, dtype, batch_frames):
                if format == "dense":
                    H = np.asarray(H)

                def fill(g, fr=fr, H=H):
                    _write_frame_common(g, fr)
                    _write_hessian(g, H, compression)

                run.write_frame(slot, fill)
                dt = time.perf_counter() - ts
                summary.append({"frame": sel[slot], "seconds": dt, "n_atoms": traj.n_atoms})
                progress.update(f"frame {sel[slot]}")
        except BaseException:
            run.discard_if_empty()
            raise
        finally:
            progress.close()
        run.finish(
            {
                "format": format,
                "dtype": dtype,
                "n_atoms": traj.n_atoms,
                "potential": spec.to_dict(),
                "potential_name": spec.name,
                "units": spec.units,
                "source_file": os.path.abspath(input),
                "source_layout": traj.layout,
                "source_group": traj.group or "",
                "length_scale": scale,
            }
        )
    return JobResult(str(output), len(sel), len(todo), time.perf_counter() - t0, summary)


# -- modes ------------------------------------------------------------------------------------------
MODES_DENSE_MAX_ATOMS = 1000  # trajectory input: dense Hessians up to this size, BSR above


def _normal_modes():
    try:
        from ..modes._nma import normal_modes
    except ImportError as exc:  # pragma: no cover - only while mdhess.modes._nma is missing
        raise InputError(f"mdhess modes needs mdhess.normal_modes, which this installation lacks ({exc})") from None
    return normal_modes


class _HessianFileSource:
    """Frames of a Hessian file written by ``mdhess hessian``."""

    def __init__(self, path):
        from ..io import ResultFile

        self.file = ResultFile(path, "hessian")
        self.n_frames = self.file.n_frames
        self.units = self.file.attrs.get("units")
        self.n_atoms = int(self.file.attrs.get("n_atoms"))

    def frame(self, slot):
        r = self.file
        g = r.group(slot)
        return {
            "hessian": r.hessian(slot),
            "positions": r.array(g, "positions"),
            "box": r.array(g, "box"),
            "masses": r.array(g, "masses"),
            "index": int(r.frame_index[slot]),
        }

    def close(self):
        self.file.close()


def _thermo_attrs(modes, temperature, hbar, classical) -> dict:
    """Harmonic thermodynamics of one frame's modes at ``temperature`` as plain attributes."""
    th = modes.thermodynamics(temperature, quantum=not classical, hbar=hbar)
    out = {}
    for key, val in vars(th).items():
        if isinstance(val, (bool, np.bool_)):
            out[f"thermo_{key}"] = bool(val)
        elif isinstance(val, (int, np.integer)):
            out[f"thermo_{key}"] = int(val)
        elif isinstance(val, (float, np.floating)):
            out[f"thermo_{key}"] = float(val)
        elif isinstance(val, str):
            out[f"thermo_{key}"] = val
    return out


def _frequency_unit(nm) -> str:
    return "THz" if nm.units is not None and not nm.units.reduced else "reduced"


def run_modes(
    input, output, *, k=20, potential=None, units=None, solver="auto", temperature=None, hbar=None, classical=False, plot=None,
    frames=None, group=None, reference_frame=0, length_scale_override=None, resume=False, overwrite=False, quiet=False,
) -> JobResult:  # fmt: skip
    """Lowest ``k`` normal modes of each selected frame of a trajectory or Hessian file."""
    from ..pair._library import UNIT_SYSTEMS, load_spec
    from ..io import ResultRun, read_trajectory
    from ..io._hdf5 import attr_str, open_hdf5

    normal_modes = _normal_modes()
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"-k must be a positive integer; got {k!r}")
    if units is not None and units not in UNIT_SYSTEMS:
        raise InputError(f"--units must be one of {UNIT_SYSTEMS}; got {units!r}")
    if temperature is not None and not (np.isfinite(temperature) and temperature > 0):
        raise InputError(f"--temperature must be a finite number > 0; got {temperature}")
    if hbar is not None and not (np.isfinite(hbar) and hbar > 0):
        raise InputError(f"--hbar must be a finite number > 0; got {hbar}")
    if plot is not None and not os.path.isdir(os.path.dirname(os.path.abspath(plot))):
        raise InputError(f"--plot folder {os.path.dirname(os.path.abspath(plot))!r} does not exist")
    with open_hdf5(input, what="input") as f:
        kind = attr_str(f.attrs.get("mdhess_kind"))
    t0 = time.perf_counter()
    if kind == "hessian":
        if potential is not None:
            raise InputError(f"--potential is not used with a Hessian file input ({input}); it records its potential")
        src = _HessianFileSource(input)
        n_frames, n_atoms = src.n_frames, src.n_atoms
        units = units or src.units
        identity = {**_input_identity(input), "source_kind": "hessian", "potential": src.file.json_attr("potential")}
        frame = src.frame
    elif kind is None:
        if potential is None:
            raise InputError(f"--potential is required when INPUT is a trajectory ({input})")
        spec = load_spec(potential)
        traj = read_trajectory(input, group=group)
        src = traj
        scale = length_scale(traj, spec, length_scale_override)
        tsrc = _Source(traj, spec, scale, reference_frame)
        n_frames, n_atoms = traj.n_frames, traj.n_atoms
        units = units or spec.units
        fmt = "dense" if n_atoms <= MODES_DENSE_MAX_ATOMS else "bsr"
        identity = {
            **_input_identity(input), "source_kind": "trajectory", "group": traj.group, "potential": spec.to_dict(),
            "potential_resolved": tsrc.potential.describe(), "length_scale": scale, "format": fmt,
            "reference_frame": reference_frame if spec.needs_reference else None,
        }  # fmt: skip

        def frame(i):
            fr = tsrc.frame(i)
            fr["hessian"] = compute_hessian(tsrc, fr, fmt, "float64")
            return fr
    else:
        raise InputError(f"{input!r} is an mdhess {kind} file; modes need a trajectory or a Hessian file")
    try:
        if k > 3 * n_atoms:
            raise InputError(f"-k {k} exceeds the number of modes 3N = {3 * n_atoms}")
        sel = parse_frames(frames, n_frames)
        if temperature is not None and units in (None, "lj") and hbar is None:
            raise InputError(
                f"--temperature in reduced units ({units or 'none'}) needs --hbar (hbar in reduced units): "
                "harmonic free energies and entropies depend on it"
            )
        settings = {**identity, "k": k, "units": units, "solver": solver, "temperature": temperature, "hbar": hbar, "classical": classical}
        run = ResultRun(output, "modes", settings, sel, resume=resume, overwrite=overwrite, note=note)
        todo = run.pending()
        if run.already_complete:
            note(f"{output} is already complete; nothing to do")
        progress = Progress(len(sel), len(sel) - len(todo), quiet=quiet, label="modes")
        summary, freq_unit = [], None
        try:
            for slot in todo:
                ts = time.perf_counter()
                fr = frame(sel[slot])
                try:
                    nm = normal_modes(
                        fr["hessian"], fr["masses"], k=k, which="lowest", project="auto", units=units, solver=solver,
                        box=fr["box"], positions=fr["positions"],
                    )  # fmt: skip
                except InputError as exc:
                    raise InputError(f"frame {fr['index']}: {exc}") from None
                freq_unit = _frequency_unit(nm)
                thermo = {} if temperature is None else _thermo_attrs(nm, temperature, hbar, classical)

                def fill(g, fr=fr, nm=nm, thermo=thermo):
                    from ..io._results import dataset

                    _write_frame_common(g, {**fr, "species": fr.get("species")})
                    for name in ("eigenvalues", "frequencies", "participation_ratio"):
                        g.create_dataset(name, data=np.asarray(getattr(nm, name), dtype=np.float64))
                    dataset(g, "vectors", np.asarray(nm.vectors, dtype=np.float64))
                    dataset(g, "displacements", np.asarray(nm.displacements, dtype=np.float64))
                    g.attrs["solver"] = str(getattr(nm, "solver", ""))
                    for name in ("n_projected", "n_zero", "n_imaginary"):
                        if hasattr(nm, name):
                            g.attrs[name] = int(getattr(nm, name))
                    g.attrs["projected"] = str(nm.projected)
                    g.attrs["which"] = str(nm.which)
                    g.attrs["zero_tol"] = float(nm.zero_tol)
                    g.attrs["scale"] = float(nm.scale)
                    if "masses" not in g:
                        g.create_dataset("masses", data=np.asarray(nm.masses, dtype=np.float64))
                    g.attrs.update(thermo)

                run.write_frame(slot, fill)
                summary.append({"frame": sel[slot], "seconds": time.perf_counter() - ts})
                progress.update(f"frame {sel[slot]}")
        except BaseException:
            run.discard_if_empty()
            raise
        finally:
            progress.close()
        run.finish(
            {
                "k": k,
                "units": units,
                "frequency_unit": freq_unit or "",
                "temperature": temperature if temperature is not None else float("nan"),
                "hbar": hbar if hbar is not None else float("nan"),
                "classical": bool(classical),
                "n_atoms": n_atoms,
                "source_file": os.path.abspath(input),
                "source_kind": identity["source_kind"],
                "potential": identity.get("potential"),
            }
        )
    finally:
        src.close()
    if plot is not None:
        plot_dos(output, plot)
    return JobResult(str(output), len(sel), len(todo), time.perf_counter() - t0, summary)


def plot_dos(modes_file, png) -> None:
    """Histogram of the frequencies found in every frame of a modes file, written as a PNG."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("--plot needs matplotlib (pip install 'mdhess[plot]')") from None
    from ..io import ResultFile

    with ResultFile(modes_file, "modes") as r:
        freqs = np.concatenate([r.array(r.group(s), "frequencies") for s in range(r.n_frames)])
        unit = r.attrs.get("frequency_unit", "")
        n = r.n_frames
    keep = freqs != 0  # zero modes (projected rigid-body ones) have frequency exactly 0
    fig = Figure(figsize=(5, 3.5), dpi=120)  # no pyplot: leaves the caller's backend alone
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(freqs[keep], bins=max(10, int(np.sqrt(keep.sum()))), color="C0")
    ax.set_xlabel(f"frequency ({unit})" if unit else "frequency")
    ax.set_ylabel("modes")
    ax.set_title(f"lowest modes, {n} frames (zero modes left out)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.fspath(png), format="png")

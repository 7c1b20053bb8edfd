"""Trajectory readers: H5MD 1.1, MDTraj HDF5 and the minimal layout, detected automatically.

Frames are streamed: opening a trajectory reads shapes and small per-atom arrays only, and
``traj[k]`` reads frame k. Boxes follow mdhess's convention (None, or a (3, 3) matrix whose rows
are the cell vectors). Lengths are returned as stored; ``length_unit`` says what the file
declares (``None`` when it declares nothing) and ``length_factor`` converts to Angstrom.

Declared sizes are checked before anything is read: per-atom arrays and boxes must have the
shapes the positions imply (a species dataset declared with 10^8 entries for 500 atoms is refused
without reading it), and the first ``traj[k]`` refuses a frame whose positions would not fit in
the memory limit (``MemoryPlanError``). Species must be whole numbers in 0..2^31-1: fractional
values are refused, not truncated, and large ones are refused, not wrapped.

Layouts (see docs/file-formats.md):

- H5MD 1.1: group ``h5md`` (attribute ``version``), ``particles/<group>/position/value``
  (F, N, 3); ``particles/<group>/box`` with attributes ``dimension`` and ``boundary`` and
  ``edges`` either a fixed dataset ((3,) or (3, 3), rows are edge vectors) or a time-dependent
  group ``edges/value`` ((F, 3) or (F, 3, 3)); optional ``species`` and ``mass`` (fixed (N,) or
  time-dependent ``value`` (F, N)); ``unit`` attributes.
- MDTraj HDF5: ``coordinates`` (F, N, 3) in nanometres, ``cell_lengths`` (F, 3) and
  ``cell_angles`` (F, 3) in degrees, ``topology`` (JSON; atom names give species names).
- Minimal: ``positions`` (F, N, 3) or (N, 3); optional ``box`` ((3,), (3, 3) fixed; (F, 3) or
  (F, 3, 3) per frame), ``species`` ((N,) or (F, N) integers), ``masses`` (N,).
"""

import json
import os
from dataclasses import dataclass

import numpy as np

from .._errors import InputError, MemoryPlanError
from ._hdf5 import attr_str, open_hdf5, read_slice
from ._species import parse_species_map, species_from_labels

TRAJECTORY_LAYOUTS = ("h5md", "mdtraj", "minimal")

# length unit spellings -> Angstrom
_LENGTH_UNITS = {
    "angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "å": 1.0, "ang": 1.0,
    "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0, "nanometres": 10.0,
    "pm": 0.01, "picometer": 0.01, "picometers": 0.01,
    "m": 1e10, "meter": 1e10, "meters": 1e10, "cm": 1e8, "um": 1e4, "bohr": 0.529177210544,
}  # fmt: skip


# spellings of reduced (dimensionless, "lj") lengths a file may declare
REDUCED_LENGTH_UNITS = frozenset({"sigma", "reduced", "lj", "1", "dimensionless", "unitless"})
SPECIES_MAX = int(np.iinfo(np.int32).max)  # species are stored and used as int32


def length_factor(unit: str | None) -> float | None:
    """Angstrom per ``unit`` (e.g. "nm" -> 10.0); None for no unit or one not recognised."""
    if unit is None:
        return None
    return _LENGTH_UNITS.get(unit.strip().lower())


def is_reduced_unit(unit: str | None) -> bool:
    """True for a declared unit that means reduced (dimensionless) lengths: "sigma", "reduced", "lj", ..."""
    return unit is not None and unit.strip().lower() in REDUCED_LENGTH_UNITS


def format_bytes(b: float) -> str:
    """A byte count for messages: "4.47 GiB"."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:.2f} {unit}"
    return f"{int(b)} B"


@dataclass(frozen=True)
class Frame:
    """One frame of a trajectory.

    Attributes:
        index: frame index in the file.
        positions: (N, 3) float64, the file's length units.
        box: None (free space) or (3, 3) float64 cell, rows are cell vectors, same units.
        species: (N,) int32 species indices, or None when the file has none (or only names).
        masses: (N,) float64 or None.
        time: simulation time or None.
    """

    index: int
    positions: np.ndarray
    box: np.ndarray | None
    species: np.ndarray | None
    masses: np.ndarray | None
    time: float | None = None


class Trajectory:
    """A trajectory file opened for streaming. Use ``mdhess.read_trajectory(path)``.

    Attributes:
        path, layout ("h5md", "mdtraj", "minimal"), group (H5MD particle group or None),
        n_frames, n_atoms, length_unit (str or None), atom_names ((N,) str array or None).
        unit_by_convention: True when ``length_unit`` is the layout's fixed convention rather
            than a statement about this file (MDTraj files always say nanometres).
        declared_shape: the positions dataset's shape as declared (nothing read).
    """

    format = "hdf5"

    def __init__(self, path, *, group: str | None = None, species_map=None):
        self.path = os.fspath(path)
        self.species_map = parse_species_map(species_map)
        self._file = open_hdf5(self.path, what="trajectory")
        try:
            self._open(group)
        except BaseException:
            self._file.close()
            raise

    # -- opening -----------------------------------------------------------------------------
    def _open(self, group):
        f = self._file
        self.group = None
        self.atom_names = None
        self._species = self._masses = self._box = None
        self._time = None
        self.box_unit = None
        self.unit_by_convention = False
        self._frame_size_checked = False
        kind = attr_str(f.attrs.get("mdhess_kind"))
        if kind is not None:
            raise InputError(f"{self.path!r} is an mdhess {kind} file, not a trajectory")
        if "h5md" in f:
            self.layout = "h5md"
            self._open_h5md(group)
        elif group is not None:
            raise InputError(f"group={group!r} applies to H5MD files only; {self.path!r} has no h5md group")
        elif "coordinates" in f:
            self.layout = "mdtraj"
            self._open_mdtraj()
        elif "positions" in f:
            self.layout = "minimal"
            self._open_minimal()
        else:
            raise InputError(
                f"{self.path!r} holds no trajectory: expected H5MD (groups h5md and particles/<group>/position), "
                f"MDTraj (dataset coordinates) or the minimal layout (dataset positions); found {sorted(f.keys())}"
            )
        if self.box_unit is not None and length_factor(self.box_unit) != length_factor(self.length_unit):
            raise InputError(
                f"{self.path}: the box is in {self.box_unit!r} but the positions in {self.length_unit!r}; "
                "mixed length units are not supported"
            )

    def _dataset(self, name, what):
        import h5py

        obj = self._file.get(name)
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"{self.path}: missing dataset {name!r} ({what})")
        return obj

    def _positions(self, ds, name):
        if ds.shape is None:
            raise InputError(f"{self.path}: dataset {name!r} is empty (no dataspace); expected (frames, atoms, 3)")
        self.declared_shape = tuple(int(n) for n in ds.shape)
        if ds.ndim == 2 and self.layout == "minimal":
            self._single = True
            shape = (1,) + ds.shape
        else:
            self._single = False
            shape = ds.shape
        if len(shape) != 3 or shape[2] != 3:
            raise InputError(f"{self.path}: dataset {name!r} must have shape (frames, atoms, 3); got {ds.shape}")
        if not _real_number(ds.dtype):
            raise InputError(f"{self.path}: dataset {name!r} must be numeric (integer or float); got dtype {ds.dtype}")
        if shape[0] == 0:
            raise InputError(f"{self.path}: dataset {name!r} has no frames")
        if shape[1] < 2:
            raise InputError(f"{self.path}: dataset {name!r} has {shape[1]} atoms; at least 2 are needed")
        self._pos = ds
        self.n_frames, self.n_atoms = int(shape[0]), int(shape[1])
        unit = attr_str(ds.attrs.get("unit", ds.attrs.get("units")))
        self.length_unit = unit if unit is not None and unit.strip() else None  # "" declares nothing

    def _per_atom(self, obj, name, kind, time_ok=True):
        """A fixed (N,) / scalar array, or a time-dependent (F, N) dataset (kept lazy). ``kind``:
        "species" (validated whole numbers, int32) or "masses" (float64). The declared shape is
        checked before anything is read."""
        import h5py

        if isinstance(obj, h5py.Group):  # H5MD time-dependent element
            if not isinstance(obj.get("value"), h5py.Dataset):
                raise InputError(f"{self.path}: time-dependent {name!r} has no 'value' dataset")
            obj = obj["value"]
            if obj.ndim != 2:
                raise InputError(f"{self.path}: {obj.name} must have shape (frames, atoms); got {obj.shape}")
        if not _real_number(obj.dtype):
            raise InputError(f"{self.path}: {obj.name} must be numeric (integer or float); got dtype {obj.dtype}")
        if obj.ndim == 2 and time_ok:
            if obj.shape[0] != self.n_frames or obj.shape[1] != self.n_atoms:
                raise InputError(
                    f"{self.path}: {obj.name} has shape {obj.shape} but the positions have {self.n_frames} frames "
                    f"of {self.n_atoms} atoms (the number of atoms must not change between frames)"
                )
            return obj
        if obj.shape not in ((), (self.n_atoms,)):  # checked before reading: the declared size may be huge
            raise InputError(
                f"{self.path}: {obj.name} has shape {obj.shape} but the positions have {self.n_atoms} atoms "
                "(the number of atoms must not change between frames)"
            )
        a = np.asarray(read_slice(obj, (), path=self.path, what=name))
        if a.ndim == 0:
            a = np.full(self.n_atoms, a)
        if kind == "species":
            return self._species_values(a, obj.name)
        return a.astype(np.float64)

    def _species_values(self, a, name):
        """(N,) int32 species from stored values: whole numbers in 0..SPECIES_MAX, else InputError
        naming the file and the dataset (never truncated, never wrapped)."""
        a = np.asarray(a)
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a)
            bad[~bad] = a[~bad] != np.floor(a[~bad])
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(
                    f"{self.path}: dataset {name!r} holds species that are not whole numbers ({a[i].item()!r} at atom {i}); "
                    "species are integer indices 0, 1, ... (floats are accepted only with integer values)"
                )
        bad = (a < 0) | (a > SPECIES_MAX)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(
                f"{self.path}: dataset {name!r} holds species {a[i].item()!r} at atom {i}; species must be integers in "
                f"0..{SPECIES_MAX}"
            )
        return a.astype(np.int32)

    def _open_h5md(self, group):
        import h5py

        f = self._file
        version = f["h5md"].attrs.get("version")
        if version is not None and tuple(np.asarray(version).ravel()[:1]) != (1,):
            raise InputError(f"{self.path}: H5MD version {np.asarray(version).tolist()} is not supported (1.x expected)")
        parts = f.get("particles")
        if not isinstance(parts, h5py.Group) or not len(parts):
            raise InputError(f"{self.path}: H5MD file has no particles/<group>")
        names = sorted(parts.keys())
        if group is None:
            if len(names) == 1:
                group = names[0]
            elif "all" in names:
                group = "all"
            else:
                raise InputError(f"{self.path}: several particle groups {names}; choose one with group=NAME")
        if group not in parts:
            raise InputError(f"{self.path}: group={group!r} not found; particle groups: {names}")
        self.group = group
        g = parts[group]
        if "position" not in g:
            raise InputError(f"{self.path}: missing particles/{group}/position (H5MD time-dependent element)")
        pos = g["position"]
        if not isinstance(pos, h5py.Group) or "value" not in pos:
            raise InputError(f"{self.path}: missing dataset particles/{group}/position/value")
        self._positions(pos["value"], f"particles/{group}/position/value")
        if isinstance(pos.get("time"), h5py.Dataset) and pos["time"].ndim == 1 and pos["time"].shape[0] == self.n_frames:
            self._time = pos["time"]
        if "species" in g:
            self._species = self._per_atom(g["species"], f"particles/{group}/species", "species")
        if "mass" in g:
            self._masses = self._per_atom(g["mass"], f"particles/{group}/mass", "masses")
        if "box" not in g:
            raise InputError(f"{self.path}: missing particles/{group}/box (H5MD requires it)")
        box = g["box"]
        dim = box.attrs.get("dimension", 3)
        if int(np.asarray(dim).reshape(())) != 3:
            raise InputError(f"{self.path}: particles/{group}/box dimension is {dim}; only 3 is supported")
        boundary = box.attrs.get("boundary")
        if boundary is None:
            raise InputError(f"{self.path}: particles/{group}/box has no 'boundary' attribute")
        bnd = [b.decode() if isinstance(b, bytes) else str(b) for b in np.asarray(boundary).ravel()]
        if bnd == ["none"] * 3:
            self._box = None
        elif bnd == ["periodic"] * 3:
            if "edges" not in box:
                raise InputError(f"{self.path}: periodic particles/{group}/box has no 'edges'")
            self._box = self._box_source(box["edges"], f"particles/{group}/box/edges")
            self.box_unit = attr_str(self._box_obj_attrs.get("unit"))
        else:
            raise InputError(
                f"{self.path}: particles/{group}/box boundary {bnd} is not supported "
                "(all 'periodic' or all 'none')"
            )

    def _box_source(self, obj, name):
        """Fixed box -> (3, 3) array; time-dependent -> the dataset (F, 3) or (F, 3, 3)."""
        import h5py

        if isinstance(obj, h5py.Group):
            if not isinstance(obj.get("value"), h5py.Dataset):
                raise InputError(f"{self.path}: time-dependent {name} has no 'value' dataset")
            obj = obj["value"]
            self._box_obj_attrs = obj.attrs
            if obj.shape is None or obj.shape[:1] != (self.n_frames,) or obj.shape[1:] not in ((3,), (3, 3)):
                raise InputError(
                    f"{self.path}: {obj.name} must have shape ({self.n_frames}, 3) or ({self.n_frames}, 3, 3) "
                    f"(one box per position frame); got {obj.shape}"
                )
            if not _real_number(obj.dtype):
                raise InputError(f"{self.path}: {obj.name} must be numeric (integer or float); got dtype {obj.dtype}")
            return obj
        self._box_obj_attrs = obj.attrs
        self._check_fixed_box_shape(obj, name)
        return self._fixed_box(read_slice(obj, (), path=self.path, what=name), obj.name)

    def _check_fixed_box_shape(self, ds, name):
        """A fixed box's declared shape, checked before it is read."""
        if ds.shape not in ((), (3,), (3, 3)):
            raise InputError(f"{self.path}: {name} must be (3,) edge lengths or a (3, 3) cell; got shape {ds.shape}")
        if not _real_number(ds.dtype):
            raise InputError(f"{self.path}: {name} must be numeric (integer or float); got dtype {ds.dtype}")

    def _fixed_box(self, value, name):
        b = np.asarray(value, dtype=np.float64)
        if b.shape == ():
            b = np.full(3, float(b))
        if b.shape == (3,):
            b = np.diag(b)
        if b.shape != (3, 3):
            raise InputError(f"{self.path}: {name} must be (3,) edge lengths or a (3, 3) cell; got shape {b.shape}")
        return b

    def _open_mdtraj(self):
        f = self._file
        self._positions(self._dataset("coordinates", "MDTraj coordinates"), "coordinates")
        if self.length_unit is None:
            self.length_unit = "nanometers"  # MDTraj's fixed convention
        if "cell_lengths" in f:
            L, A = self._dataset("cell_lengths", "MDTraj cell"), self._dataset("cell_angles", "MDTraj cell")
            for d in (L, A):
                if d.shape != (self.n_frames, 3):
                    raise InputError(f"{self.path}: {d.name} must have shape ({self.n_frames}, 3); got {d.shape}")
            self._box = (L, A)
        if "time" in f and f["time"].shape == (self.n_frames,):
            self._time = f["time"]
        self.unit_by_convention = length_factor(self.length_unit) == length_factor("nm")
        if "topology" in f:
            top = self._dataset("topology", "MDTraj topology")
            declared = (top.size or 0) * top.dtype.itemsize
            if declared > _TOPOLOGY_BYTES_PER_ATOM * self.n_atoms + 2**20:  # checked before reading
                raise InputError(
                    f"{self.path}: topology declares {format_bytes(declared)} for {self.n_atoms} atoms "
                    f"(shape {top.shape}, {top.dtype}); refused before reading"
                )
            self.atom_names = self._mdtraj_names(read_slice(top, (), path=self.path, what="topology"))

    def _mdtraj_names(self, raw):
        raw = np.asarray(raw).ravel()
        text = raw[0] if raw.dtype.kind in "SOU" else bytes(raw.astype(np.uint8))
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        try:
            top = json.loads(text)
            atoms = [a for c in top["chains"] for r in c["residues"] for a in r["atoms"]]
            names = {int(a["index"]): str(a.get("name") or a.get("element") or "") for a in atoms}
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{self.path}: MDTraj topology is not valid JSON of chains/residues/atoms ({exc})") from None
        if sorted(names) != list(range(self.n_atoms)):
            raise InputError(
                f"{self.path}: MDTraj topology describes {len(names)} atoms but coordinates have {self.n_atoms} "
                "(the number of atoms must not change between frames)"
            )
        return np.array([names[i] for i in range(self.n_atoms)])

    def _open_minimal(self):
        f = self._file
        self._positions(self._dataset("positions", "positions"), "positions")
        if "species" in f:
            self._species = self._per_atom(self._dataset("species", "species"), "species", "species", time_ok=not self._single)
        if "masses" in f:
            self._masses = self._per_atom(self._dataset("masses", "masses"), "masses", "masses", time_ok=False)
        if "box" in f:
            ds = self._dataset("box", "box")
            self.box_unit = attr_str(ds.attrs.get("unit"))
            if ds.ndim == 3 or (ds.ndim == 2 and ds.shape[0] == self.n_frames and ds.shape != (3, 3)):
                if ds.shape[0] != self.n_frames or ds.shape[1:] not in ((3,), (3, 3)):
                    raise InputError(f"{self.path}: dataset 'box' per frame must be ({self.n_frames}, 3) or ({self.n_frames}, 3, 3); got {ds.shape}")
                if not _real_number(ds.dtype):
                    raise InputError(f"{self.path}: dataset 'box' must be numeric (integer or float); got dtype {ds.dtype}")
                self._box = ds
            else:
                self._check_fixed_box_shape(ds, "dataset 'box'")
                self._box = self._fixed_box(read_slice(ds, (), path=self.path, what="box"), "box")

    # -- frames ------------------------------------------------------------------------------
    def __len__(self):
        return self.n_frames

    def _index(self, k) -> int:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise InputError(f"frame index must be an integer; got {k!r}")
        kk = int(k) + (self.n_frames if k < 0 else 0)
        if not 0 <= kk < self.n_frames:
            raise InputError(f"frame {int(k)} is out of range: {self.path!r} has {self.n_frames} frames")
        return kk

    def box(self, k: int) -> np.ndarray | None:
        k = self._index(k)
        src = self._box
        if src is None:
            return None
        if isinstance(src, np.ndarray):
            b = src
        elif isinstance(src, tuple):  # MDTraj lengths and angles
            L = read_slice(src[0], k, path=self.path, what=f"frame {k} cell_lengths")
            A = read_slice(src[1], k, path=self.path, what=f"frame {k} cell_angles")
            if np.all(np.asarray(L) == 0):
                return None
            b = cell_from_lengths_angles(L, A)
        else:
            b = self._fixed_box(read_slice(src, k, path=self.path, what=f"frame {k} box"), f"{src.name}[{k}]")
        if not np.all(np.isfinite(b)):
            raise InputError(f"{self.path}: frame {k} has a non-finite box {np.asarray(b).tolist()}")
        return b

    def _atoms(self, src, k, name):
        if src is None or isinstance(src, np.ndarray):
            return src
        return np.asarray(read_slice(src, k, path=self.path, what=f"frame {k} {name}"))

    @property
    def periodic(self) -> bool:
        """Whether the file has a box (an MDTraj frame may still be free space: all-zero lengths)."""
        return self._box is not None

    @property
    def frame_nbytes(self) -> int:
        """Bytes that reading one frame's positions takes: the stored values and their float64 copy."""
        return self.n_atoms * 3 * (self._pos.dtype.itemsize + 8)

    def check_frame_size(self, limit=None) -> None:
        """Refuse (``MemoryPlanError``) positions whose declared size does not fit in the memory
        limit (``memory_limit=``, else $MDHESS_MEMORY_LIMIT, else the free memory), before reading."""
        from ..pair._planner import memory_limit

        lim = memory_limit(limit)
        if self.frame_nbytes > lim:
            raise MemoryPlanError(
                f"{self.path}: positions declared with shape {self.declared_shape} ({self._pos.dtype}) take about "
                f"{format_bytes(self.frame_nbytes)} per frame to read, more than the memory limit of "
                f"{format_bytes(lim)}; refused before reading"
            )

    def __getitem__(self, k) -> Frame:
        k = self._index(k)
        if not self._frame_size_checked:
            self.check_frame_size()
            self._frame_size_checked = True
        where = () if self._single else k
        R = np.asarray(read_slice(self._pos, where, path=self.path, what=f"frame {k} positions"), dtype=np.float64)
        bad = ~np.all(np.isfinite(R), axis=1)
        if bad.any():
            a = int(np.argmax(bad))
            raise InputError(f"{self.path}: frame {k} has non-finite coordinates (NaN or inf) at atom {a}: {R[a].tolist()}")
        s = self._species
        if s is not None and not isinstance(s, np.ndarray):  # time-dependent: validated frame by frame
            s = self._species_values(self._atoms(s, k, "species"), f"{s.name}[{k}]")
            if self.species_map:
                s = self._mapped_time_dependent(s, k)
        m = self._atoms(self._masses, k, "masses")
        if m is not None and not (np.all(np.isfinite(m)) and np.all(m > 0)):
            raise InputError(f"{self.path}: frame {k} masses must be finite and > 0")
        t = None if self._time is None else float(read_slice(self._time, k, path=self.path, what=f"frame {k} time"))
        return Frame(k, R, self.box(k), s, m, t)

    def __iter__(self):
        for k in range(self.n_frames):
            yield self[k]

    def _mapped_time_dependent(self, s, k):
        if any(isinstance(v, str) for v in self.species_map.values()):
            raise InputError(
                f"{self.path}: species change between frames; a species_map for them must map to indices, not names"
            )
        return species_from_labels(s.astype(str), None, self.species_map, kind="integer", where=f"{self.path} frame {k}")

    def species_indices(self, names=None) -> np.ndarray | None:
        """Per-atom species indices for a potential whose species are ``names`` (or None).

        Integer species stored in the file win (frame 0 for time-dependent ones), mapped through
        ``species_map`` when one was given. Otherwise MDTraj atom names are matched to ``names``
        (or mapped by ``species_map``); a file whose atoms all share one name gives zeros.
        """
        if self._species is not None:
            s = self._species
            if not isinstance(s, np.ndarray):
                s = self._species_values(self._atoms(s, 0, "species"), f"{s.name}[0]")
            if self.species_map:
                return species_from_labels(s.astype(str), names, self.species_map, kind="integer", where=self.path)
            return s
        if self.atom_names is None:
            if self.species_map:
                raise InputError(f"{self.path}: species_map is given but the file has no species or atom names to map")
            return None
        return species_from_labels(self.atom_names, names, self.species_map, kind="name", where=self.path)

    @property
    def has_time_dependent_species(self) -> bool:
        return self._species is not None and not isinstance(self._species, np.ndarray)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        grp = f", group={self.group!r}" if self.group else ""
        return f"Trajectory({self.path!r}, layout={self.layout!r}{grp}, n_frames={self.n_frames}, n_atoms={self.n_atoms})"


_TOPOLOGY_BYTES_PER_ATOM = 4096  # an MDTraj topology's JSON takes about 150 bytes per atom


def _real_number(dtype) -> bool:
    """Integer or floating point (not bool, complex, strings or compounds)."""
    return dtype is not None and dtype.kind in "iuf"


def cell_from_lengths_angles(lengths, angles) -> np.ndarray:
    """(3, 3) cell (rows a, b, c; a along x, b in the xy plane) from lengths and angles in degrees
    (alpha = angle(b, c), beta = angle(a, c), gamma = angle(a, b)), MDTraj's convention."""
    a, b, c = np.asarray(lengths, dtype=np.float64)
    al, be, ga = np.deg2rad(np.asarray(angles, dtype=np.float64))
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    cell = np.array(
        [[a, 0.0, 0.0], [b * np.cos(ga), b * np.sin(ga), 0.0], [cx, cy, np.sqrt(max(c * c - cx * cx - cy * cy, 0.0))]]
    )
    cell[np.abs(cell) < 1e-12 * max(a, b, c)] = 0.0  # cos(90 deg) is 6e-17, not 0
    return cell


def lengths_angles_from_cell(cell) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``cell_from_lengths_angles`` (angles in degrees)."""
    v = np.asarray(cell, dtype=np.float64)
    L = np.linalg.norm(v, axis=1)

    def ang(x, y):
        return np.rad2deg(np.arccos(np.clip(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)), -1, 1)))

    return L, np.array([ang(v[1], v[2]), ang(v[0], v[2]), ang(v[0], v[1])])

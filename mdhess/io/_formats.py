"""Trajectory formats beyond HDF5, and ``read_trajectory``, which detects the format.

- Extended XYZ and LAMMPS dump (text) files are indexed once (the byte offset of each frame,
  found by a scan that keeps nothing else), and ``traj[k]`` hands the text of frame k alone to
  ASE's reader (``ase.io.read(..., format="extxyz" | "lammps-dump-text")``): memory holds one
  frame, and frame k is read without parsing the frames before it.
- A LAMMPS data file is one frame (``ase.io.read(..., format="lammps-data")``).
- DCD, XTC and TRR (coordinates only) are read with a topology file through MDAnalysis (an
  optional dependency), frame by frame, in the units the file stores (``convert_units=False``).

What each format declares (docs/file-formats.md):

- Lengths: extended XYZ and LAMMPS files record no unit (``length_unit`` None: the reader of the
  numbers decides; LAMMPS writes lengths in its ``units`` style: sigma for lj, Angstrom for
  metal and real). DCD stores Angstrom and XTC / TRR nanometres by convention
  (``unit_by_convention``).
- Species: per-atom labels (``atom_names``): element symbols (extended XYZ, a dump's ``element``
  column), LAMMPS atom types (``label_kind`` "lammps-type": type t is species t - 1), or a
  topology's atom names; ``species_indices(names)`` maps them (``mdhess.io._species``).
- Masses: only what the file states (a data file's ``Masses``, an extended XYZ ``masses``
  column); never ASE's element masses.
"""

import io
import os
import re
import warnings
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import numpy as np

from .._errors import InputError, MemoryPlanError
from ._hdf5 import READABLE_FORMATS, first_line
from ._species import parse_species_map, species_from_labels
from ._trajectory import Frame, Trajectory, cell_from_lengths_angles, format_bytes

TRAJECTORY_FORMATS = ("hdf5", "extxyz", "lammps-dump-text", "lammps-data", "dcd", "xtc", "trr")
MDANALYSIS_FORMATS = ("dcd", "xtc", "trr")
_SUFFIXES = {
    ".h5": "hdf5", ".hdf5": "hdf5", ".h5md": "hdf5", ".hdf": "hdf5",
    ".xyz": "extxyz", ".extxyz": "extxyz",
    ".dump": "lammps-dump-text", ".lammpstrj": "lammps-dump-text", ".lammpsdump": "lammps-dump-text",
    ".data": "lammps-data", ".lmp": "lammps-data",
    ".dcd": "dcd", ".xtc": "xtc", ".trr": "trr",
}  # fmt: skip
_SCAN_BYTES = 1 << 20
_TIMESTEP = b"ITEM: TIMESTEP"


def detect_format(path, format: str | None = None) -> str:
    """The format of a trajectory file: ``format`` when given, else from its content and suffix.

    HDF5 is recognised by its signature; then the suffix decides (``_SUFFIXES``); then the first
    bytes (a LAMMPS dump starts with ``ITEM: TIMESTEP``, an XYZ file with an atom count, a LAMMPS
    data file has an ``N atoms`` header line).

    Raises:
        InputError: missing file, a directory, an empty file, an unknown ``format``, or content
            that is none of the formats read (the message lists them).
    """
    import h5py

    p = Path(os.fspath(path))
    if format is not None:
        if format not in TRAJECTORY_FORMATS:
            raise InputError(f"read_trajectory(format={format!r}): not a trajectory format; formats: {list(TRAJECTORY_FORMATS)}")
        return format
    if not p.exists():
        raise InputError(f"trajectory file not found: {str(p)!r}")
    if p.is_dir():
        raise InputError(f"trajectory {str(p)!r} is a directory, not a file")
    if h5py.is_hdf5(str(p)):
        return "hdf5"
    suffix = p.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise InputError(f"trajectory {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise InputError(f"trajectory {str(p)!r} is empty; {READABLE_FORMATS}")
    lines = head.decode("utf-8", "replace").splitlines()
    if lines and lines[0].strip().startswith("ITEM: TIMESTEP"):
        return "lammps-dump-text"
    if len(lines) >= 2 and lines[0].strip().isdigit():
        return "extxyz"
    if any(ln.split("#")[0].split()[1:] == ["atoms"] for ln in lines[1:40]):
        return "lammps-data"
    raise InputError(f"trajectory {str(p)!r} is not an HDF5 file and not a format recognised from its suffix or content; {READABLE_FORMATS}")


class _Streamed:
    """What the non-HDF5 trajectories share: frame indices, iteration, species, size checks."""

    group = None
    box_unit = None
    has_time_dependent_species = False

    def __len__(self):
        return self.n_frames

    def _index(self, k) -> int:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise InputError(f"frame index must be an integer; got {k!r}")
        kk = int(k) + (self.n_frames if k < 0 else 0)
        if not 0 <= kk < self.n_frames:
            raise InputError(f"frame {int(k)} is out of range: {self.path!r} has {self.n_frames} frames")
        return kk

    def __iter__(self):
        for k in range(self.n_frames):
            yield self[k]

    @property
    def periodic(self) -> bool:
        """Whether frame 0 has a box."""
        return self._box0 is not None

    def check_frame_size(self, limit=None) -> None:
        """Refuse (``MemoryPlanError``) a frame that would not fit in the memory limit."""
        from ..pair._planner import memory_limit

        lim = memory_limit(limit)
        if self.frame_nbytes > lim:
            raise MemoryPlanError(
                f"{self.path}: one frame of {self.n_atoms} atoms takes about {format_bytes(self.frame_nbytes)} to read, "
                f"more than the memory limit of {format_bytes(lim)}"
            )

    def _checked_once(self):
        if not self._frame_size_checked:
            self.check_frame_size()
            self._frame_size_checked = True

    def _finite(self, R, k):
        bad = ~np.all(np.isfinite(R), axis=1)
        if bad.any():
            a = int(np.argmax(bad))
            raise InputError(f"{self.path}: frame {k} has non-finite coordinates (NaN or inf) at atom {a}: {R[a].tolist()}")

    def species_indices(self, names=None) -> np.ndarray:
        """Per-atom species indices for a potential whose species are ``names`` (or None): see
        ``mdhess.io._species`` (LAMMPS type t -> t - 1; names matched; ``species_map`` wins)."""
        return species_from_labels(self.atom_names, names, self.species_map, kind=self.label_kind, where=self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TextTrajectory(_Streamed):
    """An extended XYZ, LAMMPS dump (text) or LAMMPS data file opened for streaming through ASE.

    Same interface as ``Trajectory`` (``len``, ``traj[k]``, iteration, ``species_indices``,
    ``with``). Attributes: path, format and layout (the format name), n_frames, n_atoms,
    length_unit (None: these formats record no unit), atom_names ((N,) labels), label_kind
    ("name" or "lammps-type"), declared_shape.
    """

    unit_by_convention = False

    def __init__(self, path, format: str, *, species_map=None):
        self.path = os.fspath(path)
        self.format = self.layout = format
        self.species_map = parse_species_map(species_map)
        self.length_unit = None
        self._frame_size_checked = False
        try:
            import ase.io  # noqa: F401  (a core dependency: say so if it is missing)
        except ImportError:  # pragma: no cover - ase is a core dependency
            raise InputError(f"{self.path}: reading {format} files needs ASE (pip install ase)") from None
        if format == "lammps-data":
            self._offsets, self._end, self._columns = [0], os.path.getsize(self.path), None
            declared = _data_atom_count(self.path)
        else:
            self._offsets, self._end, self._columns, declared = _index_frames(self.path, format)
        self.n_frames = len(self._offsets)
        if declared is not None:  # the size the header declares, checked before frame 0 is parsed
            if declared < 2:
                raise InputError(f"{self.path}: frame 0 declares {declared} atoms; at least 2 are needed")
            self.n_atoms = declared
            self._checked_once()
        first = self._parse(0)
        if declared is not None and len(first) != declared:
            raise InputError(f"{self.path}: frame 0 declares {declared} atoms but holds {len(first)}")
        self.n_atoms = len(first)
        if self.n_atoms < 2:
            raise InputError(f"{self.path}: frame 0 has {self.n_atoms} atoms; at least 2 are needed")
        self.declared_shape = (self.n_frames, self.n_atoms, 3)
        self.label_kind, self.atom_names = self._labels(first)
        self._has_masses = self._states_masses(first)
        self._first = first  # frame 0, parsed once (a data file's only frame)
        self._box0 = self._box(first, 0)

    # -- parsing -----------------------------------------------------------------------------
    def _chunk(self, k: int) -> str:
        start = self._offsets[k]
        stop = self._offsets[k + 1] if k + 1 < self.n_frames else self._end
        with open(self.path, "rb") as fh:
            fh.seek(start)
            return fh.read(stop - start).decode("utf-8", "replace")

    def _parse(self, k: int):
        import ase.io

        kw = {"format": self.format}
        if self.format == "lammps-dump-text":
            kw.update(index=0, units="ASE")  # "ASE" units: the numbers as written, no conversion
        elif self.format == "lammps-data":
            kw.update(units="ASE", read_image_flags=False)  # positions as written (no image shifts)
        else:
            kw.update(index=0)
        try:
            text = None if self.format == "lammps-data" else self._chunk(k)
            src = self.path if text is None else io.StringIO(text)
            labels = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # ASE's notes on guessed elements
                try:
                    atoms = ase.io.read(src, **kw)
                except KeyError:
                    if text is None:
                        raise
                    # labels that are not elements (A, B; LAMMPS "dump xyz" writes type numbers):
                    # ASE reads the frame with "X" in their place, the labels are kept here
                    relabel = _xyz_relabelled if self.format == "extxyz" else _dump_relabelled
                    text, labels = relabel(text, self.path, k)
                    atoms = ase.io.read(io.StringIO(text), **kw)
            if labels is not None:
                atoms.info["mdhess_labels"] = labels
        except InputError:
            raise
        except Exception as exc:  # ASE's parsers raise ValueError, KeyError, IndexError, StopIteration...
            hint = ""
            if self.format == "lammps-data":
                hint = "; if the atom style cannot be guessed, name it after the section header ('Atoms # atomic')"
            raise InputError(
                f"{self.path}: frame {k} cannot be read as {self.format} ({type(exc).__name__}: {first_line(exc)}){hint}"
            ) from None
        return atoms

    def _labels(self, atoms):
        cols = self._columns
        if self.format == "lammps-data" or (cols is not None and "element" not in cols):
            t = atoms.arrays.get("type")
            if t is None or not np.all(np.asarray(t) > 0):
                raise InputError(f"{self.path}: no LAMMPS atom types found (a 'type' column or numeric types)")
            return "lammps-type", np.asarray(t).astype(str)
        labels = atoms.info.get("mdhess_labels")
        if labels is not None:  # XYZ labels that are not elements: numbers are LAMMPS types
            kind = "lammps-type" if all(x.isdigit() and int(x) > 0 for x in set(labels.tolist())) else "name"
            return kind, labels
        return "name", np.asarray(atoms.get_chemical_symbols()).astype(str)

    def _states_masses(self, atoms) -> bool:
        if self.format == "extxyz":
            return "masses" in atoms.arrays and self._xyz_has_masses()
        if self.format == "lammps-data":
            return atoms.has("masses") and _data_has_masses(self.path)
        return False

    def _xyz_has_masses(self) -> bool:
        head = self._chunk(0).split("\n", 2)
        return len(head) > 1 and "masses:r:1" in head[1].lower()

    def _box(self, atoms, k):
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if not pbc.any():
            return None
        if not pbc.all():
            raise InputError(
                f"{self.path}: frame {k} is periodic along {pbc.tolist()}; only fully periodic or free-space systems are supported"
            )
        b = np.array(atoms.cell.array, dtype=np.float64)
        if not np.all(np.isfinite(b)) or abs(np.linalg.det(b)) == 0:
            raise InputError(f"{self.path}: frame {k} has a periodic cell {b.tolist()} without volume")
        return b

    # -- the Trajectory interface ------------------------------------------------------------
    def box(self, k: int) -> np.ndarray | None:
        k = self._index(k)
        return self._box0 if k == 0 else self[k].box

    @property
    def frame_nbytes(self) -> int:
        """Bytes that reading one frame takes: its text, the parsed arrays and their float64 copy."""
        return max(self._end // max(self.n_frames, 1), 1) + self.n_atoms * 3 * 16

    def __getitem__(self, k) -> Frame:
        k = self._index(k)
        self._checked_once()
        atoms = self._first if k == 0 and self._first is not None else self._parse(k)
        if len(atoms) != self.n_atoms:
            raise InputError(
                f"{self.path}: frame {k} has {len(atoms)} atoms, frame 0 {self.n_atoms} "
                "(the number of atoms must not change between frames)"
            )
        if k != 0 and not np.array_equal(self._labels(atoms)[1], self.atom_names):
            raise InputError(f"{self.path}: the atoms' types or names in frame {k} differ from frame 0's")
        R = np.array(atoms.positions, dtype=np.float64)
        self._finite(R, k)
        m = np.array(atoms.get_masses(), dtype=np.float64) if self._has_masses else None
        if m is not None and not (np.all(np.isfinite(m)) and np.all(m > 0)):
            raise InputError(f"{self.path}: frame {k} masses must be finite and > 0")
        box = self._box0 if k == 0 else self._box(atoms, k)
        return Frame(k, R, box, None, m, None)

    def close(self):
        self._first = None

    def __repr__(self):
        return f"TextTrajectory({self.path!r}, format={self.format!r}, n_frames={self.n_frames}, n_atoms={self.n_atoms})"


def _index_frames(path, fmt) -> tuple[list, int, list | None, int | None]:
    """(byte offset of each frame, file size, the dump's column names or None, frame 0's declared
    atom count), by one scan."""
    size = os.path.getsize(path)
    if size == 0:
        raise InputError(f"trajectory {path!r} is empty; {READABLE_FORMATS}")
    if fmt == "lammps-dump-text":
        offsets = _dump_offsets(path)
        if not offsets:
            raise InputError(f"{path}: no 'ITEM: TIMESTEP' line: not a LAMMPS dump text file")
        with open(path, "rb") as fh:
            fh.seek(offsets[0])
            cols = n0 = None
            head = list(islice(fh, 12))
            for i, line in enumerate(head):
                if line.startswith(b"ITEM: NUMBER OF ATOMS") and i + 1 < len(head):
                    n0 = _count(head[i + 1], path)
                if line.startswith(b"ITEM: ATOMS"):
                    cols = line.decode("utf-8", "replace").split()[2:]
                    break
        if cols is None or not ({"x", "xs", "xu", "xsu"} & set(cols)):
            raise InputError(f"{path}: the first frame has no 'ITEM: ATOMS' line with positions (x y z, xs ys zs, xu yu zu)")
        if "element" not in cols and "type" not in cols:
            raise InputError(f"{path}: the ATOMS columns {cols} have neither 'type' nor 'element'; species cannot be told")
        return offsets, size, cols, n0
    offsets, n0 = _xyz_offsets(path)
    return offsets, size, None, n0


def _count(line: bytes, path) -> int:
    try:
        return int(line.split()[0])
    except (ValueError, IndexError):
        raise InputError(f"{path}: expected an atom count; got {line[:60]!r}") from None


def _data_atom_count(path) -> int | None:
    """The ``N atoms`` header line of a LAMMPS data file (None when not among its first lines)."""
    with open(path, "rb") as fh:
        for line in islice(fh, 1, 60):
            tok = line.split(b"#")[0].split()
            if tok[1:] == [b"atoms"]:
                return _count(tok[0], path)
    return None


def _dump_offsets(path) -> list[int]:
    """Byte offsets of the lines that start with ``ITEM: TIMESTEP`` (block search, not per line)."""
    offsets, pos, tail = [], 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(_SCAN_BYTES):
            buf = tail + block
            base = pos - len(tail)
            i = buf.find(b"\n" + _TIMESTEP)
            while i >= 0:
                offsets.append(base + i + 1)
                i = buf.find(b"\n" + _TIMESTEP, i + 1)
            keep = len(_TIMESTEP)
            tail = buf[-keep:]
            pos += len(block)
    return sorted(set(offsets))


def _xyz_offsets(path) -> tuple[list[int], int]:
    """(byte offsets of the frames of an XYZ file, frame 0's atom count): a count line, a comment
    line, count atom lines, skipped unparsed."""
    offsets, n0 = [], None
    with open(path, "rb") as fh:
        while True:
            pos = fh.tell()
            line = fh.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                n = int(line.split()[0])
            except ValueError:
                raise InputError(
                    f"{path}: expected an atom count at byte {pos} (frame {len(offsets)}); got {line[:60]!r}"
                ) from None
            got = sum(1 for _ in islice(fh, n + 1))  # counted, not kept
            if got < n + 1:
                raise InputError(f"{path}: frame {len(offsets)} is truncated ({max(got - 1, 0)} of {n} atom lines)")
            offsets.append(pos)
            n0 = n if n0 is None else n0
    if not offsets:
        raise InputError(f"trajectory {path!r} has no XYZ frames")
    return offsets, n0


def _xyz_relabelled(text: str, path, k: int) -> tuple[str, np.ndarray]:
    """An XYZ frame with its species column replaced by "X", and the labels it held."""
    lines = text.split("\n")
    n = int(lines[0].split()[0])
    m = re.search(r'Properties=("?)([^"\s]+)\1', lines[1])
    props = (m.group(2) if m else "species:S:1:pos:R:3").split(":")
    offset = 0
    for name, _kind, count in zip(props[0::3], props[1::3], props[2::3]):
        if name.lower() == "species":
            break
        offset += int(count)
    labels = []
    for i in range(2, 2 + n):
        tok = lines[i].split()
        if len(tok) <= offset:
            raise InputError(f"{path}: frame {k}, atom {i - 2}: no species column in {lines[i][:60]!r}")
        labels.append(tok[offset])
        tok[offset] = "X"
        lines[i] = " ".join(tok)
    return "\n".join(lines), np.asarray(labels).astype(str)


def _dump_relabelled(text: str, path, k: int) -> tuple[str, np.ndarray]:
    """A dump frame with its ``element`` column replaced by "X", and the labels it held, in the
    order of atom ids (ASE sorts the atoms by id)."""
    lines = text.split("\n")
    n = head = None
    for i, line in enumerate(lines):
        if line.startswith("ITEM: NUMBER OF ATOMS"):
            n = int(lines[i + 1].split()[0])
        if line.startswith("ITEM: ATOMS"):
            head = i
            break
    cols = lines[head].split()[2:] if head is not None else []
    if n is None or "element" not in cols:
        raise InputError(f"{path}: frame {k} has unknown element names and no 'element' column to read them from")
    e, idc = cols.index("element"), (cols.index("id") if "id" in cols else None)
    labels, ids = [], []
    for i in range(head + 1, head + 1 + n):
        tok = lines[i].split()
        labels.append(tok[e])
        ids.append(int(tok[idc]) if idc is not None else i)
        tok[e] = "X"
        lines[i] = " ".join(tok)
    order = np.argsort(np.asarray(ids)) if idc is not None else np.arange(n)
    return "\n".join(lines), np.asarray(labels).astype(str)[order]


def _data_has_masses(path) -> bool:
    """Whether a LAMMPS data file has a ``Masses`` section (else ASE would invent element masses)."""
    with open(path, "rb") as fh:
        return any(line.split(b"#")[0].strip() == b"Masses" for line in fh)


class MDAnalysisTrajectory(_Streamed):
    """DCD, XTC or TRR with a topology, read frame by frame through MDAnalysis.

    Lengths are returned as stored (``convert_units=False``): Angstrom for DCD, nanometres for
    XTC and TRR (``length_unit``, ``unit_by_convention`` True). Species labels are the
    topology's atom names, else its atom types (LAMMPS data topologies: numeric types, read as
    LAMMPS types).
    """

    unit_by_convention = True

    def __init__(self, path, format: str, *, topology=None, species_map=None):
        self.path = os.fspath(path)
        self.format = self.layout = format
        self.species_map = parse_species_map(species_map)
        self._frame_size_checked = False
        if topology is None:
            raise InputError(
                f"{self.path}: {format.upper()} files hold coordinates only; give a topology file with topology=... "
                "(PDB, GRO, PSF, a LAMMPS data file, ...) for the atom names"
            )
        try:
            import MDAnalysis as mda
        except ImportError:
            raise InputError(f"{self.path}: reading {format.upper()} files needs MDAnalysis (pip install 'mdhess[mdanalysis]')") from None
        self.topology = os.fspath(topology)
        if not Path(self.topology).is_file():
            raise InputError(f"topology file not found: {self.topology!r}")
        if not Path(self.path).is_file():
            raise InputError(f"trajectory file not found: {self.path!r}")
        try:
            with _quiet_mdanalysis():
                self._u = mda.Universe(self.topology, self.path, format=format.upper(), convert_units=False)
        except Exception as exc:  # MDAnalysis raises ValueError, OSError, EOFError, ...
            raise InputError(
                f"{self.path}: cannot be read as {format.upper()} with the topology {self.topology!r} "
                f"({type(exc).__name__}: {first_line(exc)})"
            ) from None
        tr = self._u.trajectory
        self.n_frames, self.n_atoms = int(tr.n_frames), int(self._u.atoms.n_atoms)
        if self.n_frames == 0:
            raise InputError(f"{self.path}: no frames")
        if self.n_atoms < 2:
            raise InputError(f"{self.path}: {self.n_atoms} atoms; at least 2 are needed")
        self.declared_shape = (self.n_frames, self.n_atoms, 3)
        self.length_unit = (getattr(tr, "units", None) or {}).get("length") or ("Angstrom" if format == "dcd" else "nm")
        atoms = self._u.atoms
        if hasattr(atoms, "names") and all(str(n).strip() for n in atoms.names):
            self.label_kind, self.atom_names = "name", np.asarray(atoms.names).astype(str)
        elif hasattr(atoms, "types"):
            t = np.asarray(atoms.types).astype(str)
            numeric = all(x.isdigit() and int(x) > 0 for x in t.tolist())
            self.label_kind, self.atom_names = ("lammps-type" if numeric else "name"), t
        else:
            raise InputError(f"{self.topology}: the topology gives neither atom names nor types")
        self._box0 = self._read(0)[1]

    def _read(self, k: int):
        try:
            with _quiet_mdanalysis():
                ts = self._u.trajectory[k]
                R = np.array(ts.positions, dtype=np.float64)
                dims = ts.dimensions
        except Exception as exc:
            raise InputError(f"{self.path}: cannot read frame {k} ({type(exc).__name__}: {first_line(exc)})") from None
        box = None
        if dims is not None and np.any(np.asarray(dims[:3]) != 0):
            box = cell_from_lengths_angles(dims[:3], dims[3:])
            if not np.all(np.isfinite(box)):
                raise InputError(f"{self.path}: frame {k} has a non-finite box {np.asarray(dims).tolist()}")
        return R, box

    def box(self, k: int):
        return self._read(self._index(k))[1]

    @property
    def frame_nbytes(self) -> int:
        return self.n_atoms * 3 * (4 + 8)

    def __getitem__(self, k) -> Frame:
        k = self._index(k)
        self._checked_once()
        R, box = self._read(k)
        self._finite(R, k)
        return Frame(k, R, box, None, None, None)

    def close(self):
        u, self._u = getattr(self, "_u", None), None
        if u is not None:
            u.trajectory.close()

    def __repr__(self):
        return f"MDAnalysisTrajectory({self.path!r}, format={self.format!r}, n_frames={self.n_frames}, n_atoms={self.n_atoms})"


@contextmanager
def _quiet_mdanalysis():
    """MDAnalysis's notes on guessed or defaulted topology attributes, off (they are not errors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"MDAnalysis(\.|$)")
        yield


def read_trajectory(path, *, format: str | None = None, group: str | None = None, topology=None, species_map=None):
    """Open a trajectory for streaming; its format is detected unless ``format`` names it.

    Args:
        path: the file.
        format: one of ``TRAJECTORY_FORMATS`` ("hdf5": H5MD 1.1, MDTraj or the minimal layout,
            told apart by their content; "extxyz"; "lammps-dump-text"; "lammps-data"; "dcd",
            "xtc", "trr" through MDAnalysis), or None to detect it.
        group: H5MD particle group (default: the only one, or "all").
        topology: DCD / XTC / TRR only: a topology file MDAnalysis reads (PDB, GRO, PSF, LAMMPS
            data, ...), for the atom names or types.
        species_map: {file label: potential species name or index}, or its text form
            ``"Ar=0"`` / ``"1=A,2=B"``: how the file's atom names, element symbols, LAMMPS types
            or integer species become the potential's species (``traj.species_indices(names)``).

    Returns:
        A trajectory: ``len(traj)``, ``traj[k]`` -> ``Frame`` (positions, box, species, masses),
        iteration, ``with`` support, ``species_indices(names)``, ``length_unit``. Only frame k
        is read by ``traj[k]``.

    Raises:
        InputError: missing or unreadable file, a format it is not (the message lists the
            formats read), missing datasets or columns, shapes that disagree, a ``group`` or
            ``topology`` that does not apply.
    """
    fmt = detect_format(path, format)
    if fmt == "hdf5":
        if topology is not None:
            raise InputError(f"topology={os.fspath(topology)!r} applies to DCD, XTC and TRR files only; {os.fspath(path)!r} is HDF5")
        return Trajectory(path, group=group, species_map=species_map)
    if group is not None:
        raise InputError(f"group={group!r} applies to H5MD files only; {os.fspath(path)!r} is {fmt}")
    if fmt in MDANALYSIS_FORMATS:
        return MDAnalysisTrajectory(path, fmt, topology=topology, species_map=species_map)
    if topology is not None:
        raise InputError(f"topology={os.fspath(topology)!r} applies to DCD, XTC and TRR files only; {os.fspath(path)!r} is {fmt}")
    if not Path(os.fspath(path)).is_file():
        raise InputError(f"trajectory file not found: {os.fspath(path)!r}")
    return TextTrajectory(path, fmt, species_map=species_map)

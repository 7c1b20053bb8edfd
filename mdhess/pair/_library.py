"""Named potentials: declarative TOML parameter sets, loaded by name or path.

The bundled files live in the repository's top-level ``potentials/`` folder and are shipped in
the wheel as ``mdhess/_potentials``. A file names a kernel from ``mdhess.KERNELS`` (or
``elastic_network``), its parameters (scalars, (S, S) tables or tables keyed by species-pair
names such as ``A-B``), a cutoff and its treatment, the unit system and a literature
reference. The schema is documented in docs/file-formats.md; every unknown key or kernel is
rejected with a message naming the file and the key.

Example::

    pot = mdhess.load_potential("kob-andersen")            # a PairPotential
    net = mdhess.load_potential("calpha-anm", positions=R)  # an ElasticNetwork on reference R
"""

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import check_choice
from .._errors import InputError
from .._units import UNIT_SYSTEMS
from ._kernels import KERNELS

TREATMENTS = ("shift", "switch", "none")
TOP_KEYS = {"name", "description", "kernel", "units", "reference", "species", "masses", "parameters", "cutoff"}
REQUIRED_KEYS = ("kernel", "units", "reference", "parameters")
CUTOFF_KEYS = {"radius", "scale_by", "treatment", "switch_on"}
ELASTIC = "elastic_network"


def potential_dirs() -> list[Path]:
    """Folders searched for named potentials: the installed package data, then the repository's
    top-level potentials/ (editable installs and source checkouts)."""
    pkg = Path(__file__).resolve().parents[1]  # mdhess/
    dirs = [pkg / "_potentials", pkg.parent / "potentials"]
    return [d for d in dirs if d.is_dir()]


@dataclass(frozen=True)
class PotentialSpec:
    """A validated named potential, before it is turned into an mdhess potential.

    Attributes:
        name: the potential's name (the file stem for bundled files).
        description, reference: one-line text for listings and file metadata.
        kernel: a key of ``mdhess.KERNELS`` or "elastic_network".
        units: "lj", "metal" or "real".
        species: species names (index = species number), or None.
        masses: per-species masses (mass units of ``units``), or None (unit masses).
        parameters: name -> float or (S, S) float64 table, kernel defaults filled in.
        cutoff: None, float or (S, S) table, length units (for elastic networks: the bond
            cutoff in the reference structure).
        switch: None (hard cut with energy shift) or r_on, float or (S, S) table.
        treatment: "shift", "switch" or "none".
        path: the file it came from.
    """

    name: str
    description: str
    kernel: str
    units: str
    reference: str
    species: tuple | None
    masses: tuple | None
    parameters: dict
    cutoff: object
    switch: object
    treatment: str
    path: str

    @property
    def formula(self) -> str:
        if self.kernel == ELASTIC:
            return "k/2 (r - r0)^2 for pairs closer than the cutoff in the reference structure"
        return KERNELS[self.kernel].formula

    @property
    def n_species(self) -> int | None:
        for v in [*self.parameters.values(), self.cutoff, self.switch]:
            if v is not None and np.ndim(v) == 2:
                return int(np.shape(v)[0])
        return None if self.species is None else len(self.species)

    @property
    def species_count(self) -> int:
        """Species the potential distinguishes: the size of its (S, S) tables, else the length of
        its ``species`` list, else 1 (every atom alike)."""
        return self.n_species or 1

    def species_label(self) -> str:
        """The species for messages: "2 species (A, B)", "1 species (Ar)", "1 species"."""
        S = self.species_count
        names = f" ({', '.join(self.species)})" if self.species is not None else ""
        return f"{S} species{names}"

    @property
    def length_unit(self) -> str:
        """The unit lengths are given in: "sigma" (reduced, lj) or "Angstrom" (metal, real)."""
        return UNIT_SYSTEMS[self.units].length

    @property
    def max_cutoff(self) -> float | None:
        """The largest cutoff in length units (an elastic network's bond cutoff), None without one."""
        return None if self.cutoff is None else float(np.max(self.cutoff))

    @property
    def needs_reference(self) -> bool:
        """True for elastic networks, which are built on reference positions."""
        return self.kernel == ELASTIC

    def atom_masses(self, species, n_atoms: int) -> np.ndarray | None:
        """Per-atom masses (N,) from per-atom species indices (None: all species 0), or None
        when the file gives no masses."""
        if self.masses is None:
            return None
        m = np.asarray(self.masses, dtype=np.float64)
        s = np.zeros(n_atoms, dtype=np.int64) if species is None else np.asarray(species)
        if s.size and (s.min() < 0 or s.max() >= m.size):
            raise InputError(
                f"potential {self.name!r} has masses for species 0..{m.size - 1}; got species {int(s.max())}"
            )
        return m[s]

    def build(self, positions=None, box=None):
        """The mdhess potential: a ``PairPotential``, or for elastic networks an
        ``ElasticNetwork`` on ``positions`` (the reference structure) and ``box``."""
        from ._potential import pair_potential

        if self.kernel == ELASTIC:
            from ._elastic import elastic_network

            if positions is None:
                raise InputError(
                    f"load_potential({self.name!r}) is an elastic network; it needs positions=... "
                    "(the reference structure whose pairs within the cutoff become springs)"
                )
            return elastic_network(positions, self.cutoff, self.parameters["k"], box=box)
        return pair_potential(
            KERNELS[self.kernel].fn, cutoff=self.cutoff, switch=self.switch, name=self.kernel, **self.parameters
        )

    def to_dict(self) -> dict:
        """JSON-safe description (stored in output files next to the potential's own describe())."""

        def plain(v):
            return None if v is None else np.asarray(v).tolist()

        return {
            "name": self.name,
            "description": self.description,
            "kernel": self.kernel,
            "formula": self.formula,
            "units": self.units,
            "reference": self.reference,
            "species": None if self.species is None else list(self.species),
            "masses": None if self.masses is None else list(self.masses),
            "parameters": {k: plain(v) for k, v in self.parameters.items()},
            "cutoff": plain(self.cutoff),
            "switch": plain(self.switch),
            "treatment": self.treatment,
            "path": self.path,
        }


# -- parsing --------------------------------------------------------------------------------------
def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where} must be a number; got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{where} must be finite; got {value!r}")
    return float(value)


def _table(value, where: str, species: tuple | None):
    """A number, an (S, S) list of lists, or a {"X-Y": number} table keyed by species names."""
    if isinstance(value, dict):
        if species is None:
            raise InputError(f"{where} is keyed by species pairs but the file has no `species = [...]` list")
        S = len(species)
        out = np.full((S, S), np.nan)
        for key, v in value.items():
            parts = key.split("-")
            if len(parts) != 2 or parts[0] not in species or parts[1] not in species:
                raise InputError(
                    f"{where} has unknown key {key!r}; keys are species pairs like "
                    f"'{species[0]}-{species[-1]}' with species {list(species)}"
                )
            a, b = species.index(parts[0]), species.index(parts[1])
            x = _number(v, f"{where}.{key}")
            if not np.isnan(out[a, b]):
                raise InputError(f"{where} gives the pair {species[a]}-{species[b]} twice (key {key!r})")
            out[a, b] = out[b, a] = x
        missing = [f"{species[a]}-{species[b]}" for a in range(S) for b in range(a, S) if np.isnan(out[a, b])]
        if missing:
            raise InputError(f"{where} is missing the species pairs {missing}")
        return out
    if isinstance(value, list):
        rows = [r if isinstance(r, list) else None for r in value]
        if not rows or any(r is None or len(r) != len(rows) for r in rows):
            raise InputError(f"{where} must be a number, a square (S, S) list of lists or a species-pair table; got {value!r}")
        out = np.array([[_number(x, where) for x in r] for r in rows])
        if not np.array_equal(out, out.T):
            raise InputError(f"{where} must be symmetric; got {out.tolist()}")
        if species is not None and out.shape[0] != len(species):
            raise InputError(f"{where} is {out.shape[0]}x{out.shape[0]} but the file lists {len(species)} species")
        return out
    return _number(value, where)


def _check_keys(table: dict, allowed, where: str):
    for key in table:
        if key not in allowed:
            raise InputError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _string(doc: dict, key: str, src: str, default=None) -> str:
    v = doc.get(key, default)
    if not isinstance(v, str):
        raise InputError(f"{src}: key {key!r} must be a string; got {v!r}")
    return v


def parse_potential(doc: dict, src: str, default_name: str) -> PotentialSpec:
    """Validate a parsed TOML document and resolve it into a ``PotentialSpec``.

    Raises:
        InputError: unknown or missing keys, an unknown kernel or unit system, parameters that
            are not numbers or symmetric tables, or a cutoff/treatment that does not fit.
    """
    _check_keys(doc, TOP_KEYS, src)
    for key in REQUIRED_KEYS:
        if key not in doc:
            raise InputError(f"{src}: missing required key {key!r}")
    name = _string(doc, "name", src, default_name)
    kernel = _string(doc, "kernel", src)
    if kernel not in KERNELS and kernel != ELASTIC:
        raise InputError(f"{src}: key 'kernel' has unknown kernel {kernel!r} (known: {', '.join([*KERNELS, ELASTIC])})")
    units = _string(doc, "units", src)
    check_choice(units, tuple(UNIT_SYSTEMS), label=f"{src}: key 'units'")  # LAMMPS's names: lj, metal, real
    species = doc.get("species")
    if species is not None:
        if not isinstance(species, list) or not species or not all(isinstance(s, str) and s for s in species):
            raise InputError(f"{src}: key 'species' must be a list of species names; got {species!r}")
        if len(set(species)) != len(species) or any("-" in s for s in species):
            raise InputError(f"{src}: key 'species' names must be unique and contain no '-'; got {species!r}")
        species = tuple(species)
    masses = doc.get("masses")
    if masses is not None:
        if not isinstance(masses, list) or not masses:
            raise InputError(f"{src}: key 'masses' must be a list of per-species masses; got {masses!r}")
        masses = tuple(_number(m, f"{src}: masses") for m in masses)
        if any(m <= 0 for m in masses):
            raise InputError(f"{src}: key 'masses' must be > 0; got {list(masses)}")
        if species is not None and len(masses) != len(species):
            raise InputError(f"{src}: key 'masses' has {len(masses)} entries for {len(species)} species")

    params_doc = doc["parameters"]
    if not isinstance(params_doc, dict):
        raise InputError(f"{src}: [parameters] must be a table; got {params_doc!r}")
    defaults = {"k": 1.0} if kernel == ELASTIC else dict(KERNELS[kernel].defaults)
    _check_keys(params_doc, defaults, f"{src}: [parameters] of kernel {kernel}")
    params = dict(defaults)
    for key, v in params_doc.items():
        params[key] = _table(v, f"{src}: parameters.{key}", species)

    cut_doc = doc.get("cutoff", {})
    if not isinstance(cut_doc, dict):
        raise InputError(f"{src}: [cutoff] must be a table; got {cut_doc!r}")
    _check_keys(cut_doc, CUTOFF_KEYS, f"{src}: [cutoff]")
    cutoff = switch = None
    if kernel == "soft_sphere" and not cut_doc:
        cut_doc = {"radius": 1.0, "scale_by": "sigma"}  # as mdhess.soft_sphere: the range is sigma
    if kernel == ELASTIC:
        bad = set(cut_doc) - {"radius"}
        if bad:
            raise InputError(f"{src}: [cutoff] of an elastic network takes only 'radius'; got {sorted(bad)}")
        if "radius" not in cut_doc:
            raise InputError(f"{src}: [cutoff] radius is required for an elastic network (the bond cutoff)")
        cutoff = _number(cut_doc["radius"], f"{src}: cutoff.radius")
        if np.ndim(params["k"]) != 0:
            raise InputError(f"{src}: parameters.k of an elastic network must be a number")
        treatment = "bonded"
    else:
        treatment = _string(cut_doc, "treatment", src + " [cutoff]", "shift" if "radius" in cut_doc else "none")
        check_choice(treatment, TREATMENTS, label=f"{src}: cutoff.treatment")
        if treatment == "none":
            if set(cut_doc) - {"treatment"}:
                raise InputError(f"{src}: cutoff.treatment = 'none' takes no other [cutoff] keys; got {sorted(cut_doc)}")
        else:
            if "radius" not in cut_doc:
                raise InputError(f"{src}: cutoff.treatment = {treatment!r} needs cutoff.radius")
            scale = 1.0
            if "scale_by" in cut_doc:
                ref = _string(cut_doc, "scale_by", src + " [cutoff]")
                if ref not in params:
                    raise InputError(f"{src}: cutoff.scale_by names {ref!r}, which is not a parameter of {kernel}")
                scale = params[ref]
            cutoff = _table(cut_doc["radius"], f"{src}: cutoff.radius", species) * scale
            if treatment == "switch":
                if "switch_on" not in cut_doc:
                    raise InputError(f"{src}: cutoff.treatment = 'switch' needs cutoff.switch_on (r_on)")
                switch = _table(cut_doc["switch_on"], f"{src}: cutoff.switch_on", species) * scale
            elif "switch_on" in cut_doc:
                raise InputError(f"{src}: cutoff.switch_on is only used with treatment = 'switch'")
    spec = PotentialSpec(
        name=name,
        description=_string(doc, "description", src, ""),
        kernel=kernel,
        units=units,
        reference=_string(doc, "reference", src),
        species=species,
        masses=masses,
        parameters=params,
        cutoff=cutoff,
        switch=switch,
        treatment=treatment,
        path=src,
    )
    S = spec.n_species
    if S is not None and species is not None and S != len(species):
        raise InputError(f"{src}: tables are {S}x{S} but the file lists {len(species)} species")
    if masses is not None and S is not None and len(masses) != S:
        raise InputError(f"{src}: key 'masses' has {len(masses)} entries for {S} species")
    if kernel != ELASTIC:
        try:  # the constructor's own checks: symmetric tables, 0 <= switch < cutoff, consistent S
            spec.build()
        except InputError as exc:
            raise InputError(f"{src}: {exc}") from None
    return spec


def _read(path: Path) -> PotentialSpec:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"load_potential: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"load_potential: {str(path)!r} is not UTF-8 text (TOML expected)") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: malformed TOML: {exc}") from None
    return parse_potential(doc, str(path), path.stem)


def _bundled() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in potential_dirs():
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, p)
    return found


def load_spec(name_or_path) -> PotentialSpec:
    """Resolve a bundled name ("kob-andersen") or a path to a TOML file into a ``PotentialSpec``."""
    if isinstance(name_or_path, Path) or (
        isinstance(name_or_path, str) and (name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path)
    ):
        p = Path(name_or_path)
        if not p.is_file():
            raise InputError(f"load_potential(name_or_path=...) file not found: {str(p)!r}")
        return _read(p)
    if not isinstance(name_or_path, str):
        raise InputError(f"load_potential(name_or_path=...) must be a name or a path; got {type(name_or_path).__name__}")
    bundled = _bundled()
    if name_or_path not in bundled:
        if Path(name_or_path).is_file():
            return _read(Path(name_or_path))
        raise InputError(
            f"load_potential(name_or_path=...) unknown potential {name_or_path!r}; "
            f"named potentials: {', '.join(sorted(bundled)) or '(none found)'}; or give a path to a .toml file"
        )
    return _read(bundled[name_or_path])


def load_potential(name_or_path, *, positions=None, box=None):
    """Load a named potential (bundled TOML) or a TOML file into an mdhess potential.

    Args:
        name_or_path: a bundled name (see ``list_potentials()``) or a path to a ``.toml`` file.
        positions: (N, 3) reference structure; used (and required) only by elastic networks,
            whose bonds and rest lengths are those of this structure. Length units of the file.
        box: periodic box of the reference structure (elastic networks only).

    Returns:
        A ``PairPotential`` (or ``ElasticNetwork``). Its unit system, species names and masses
        are in ``mdhess.pair._library.load_spec(name_or_path)``; ``list_potentials()`` shows them too.

    Raises:
        InputError: unknown name, missing file, malformed TOML, unknown keys or kernel (the message
            names the file and the key), or an elastic network without positions.
    """
    return load_spec(name_or_path).build(positions=positions, box=box)


def list_potentials() -> list[PotentialSpec]:
    """Every bundled named potential, sorted by name, as ``PotentialSpec`` (name, kernel,
    formula, units, reference, parameters, cutoff)."""
    return [_read(p) for _, p in sorted(_bundled().items())]

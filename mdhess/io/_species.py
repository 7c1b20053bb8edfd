"""Species from what a trajectory file says about its atoms: integer species, atom names or element
symbols (extended XYZ, MDTraj, MDAnalysis topologies) or LAMMPS atom types, mapped to the indices
of a potential's parameter tables, with an explicit ``species_map`` where names must be mapped.

Rules (docs/file-formats.md, "Species"):

- a ``species_map`` ({file label: potential species name or index}) wins: every label in the file
  must be a key; a name must be one of the potential's species;
- LAMMPS atom types 1, 2, ... are species 0, 1, ... (type 1 is the potential's first species, as
  ``pair_coeff 1 1`` is LAMMPS's first);
- names and symbols are matched to the potential's species names; a potential without names
  takes a file whose atoms all share one name as species 0; anything else is an error naming the
  labels found and the potential's species.
"""

import re

import numpy as np

from .._errors import InputError

LABEL_KINDS = ("name", "lammps-type", "integer")
_ENTRY = re.compile(r"^\s*([^=,\s]+)\s*=\s*([^=,\s]+)\s*$")


def parse_species_map(text) -> dict | None:
    """``"Ar=0"``, ``"1=A,2=B"`` (or a dict) -> {file label (str): species index (int) or name (str)}.

    Args:
        text: None, a dict, or comma-separated ``LABEL=SPECIES`` entries; a SPECIES made of
            digits is an index into the potential's tables, anything else a species name.

    Returns:
        The map with string keys, or None for None / an empty string.

    Raises:
        InputError: an entry that is not ``LABEL=SPECIES``, a label given twice, a negative index.
    """
    if text is None:
        return None
    if isinstance(text, dict):
        out = {}
        for k, v in text.items():
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, int, np.integer)):
                raise InputError(f"species_map={text!r}: values must be species names or indices; got {v!r} for {k!r}")
            if not isinstance(v, str) and v < 0:
                raise InputError(f"species_map={text!r}: species indices must be >= 0; got {v!r} for {k!r}")
            out[str(k)] = v if isinstance(v, str) else int(v)
        return out or None
    if not isinstance(text, str):
        raise InputError(f"species_map must be text like 'Ar=0' or '1=A,2=B', or a dict; got {text!r}")
    if not text.strip():
        return None
    out = {}
    for entry in text.split(","):
        m = _ENTRY.match(entry)
        if m is None:
            raise InputError(
                f"species_map={text!r}: each entry must be LABEL=SPECIES (e.g. 'Ar=0' or '1=A,2=B'); got {entry.strip()!r}"
            )
        key, val = m.groups()
        if key in out:
            raise InputError(f"species_map={text!r} maps {key!r} twice")
        out[key] = int(val) if val.isdigit() else val
    return out


def format_species_map(species_map: dict | None) -> str | None:
    """The text form of a parsed map (``"1=A,2=B"``), for settings and messages."""
    if not species_map:
        return None
    return ",".join(f"{k}={v}" for k, v in species_map.items())


def species_from_labels(labels, names, species_map, *, kind: str, where: str) -> np.ndarray | None:
    """(N,) int32 species indices from per-atom labels.

    Args:
        labels: (N,) labels as strings (names, symbols, LAMMPS types or integer species).
        names: the potential's species names (index = species), or None when it has none.
        species_map: parsed ``species_map`` or None.
        kind: "name" (match to ``names``), "lammps-type" (type t -> species t - 1) or
            "integer" (the labels are species indices already).
        where: how messages name the file.

    Returns:
        int32 indices; the range against the potential's tables is checked by the caller.

    Raises:
        InputError: a label the map does not cover, a map value that is not a species of the
            potential, names that are not the potential's species (naming them), a LAMMPS type < 1.
    """
    labels = np.asarray(labels).astype(str)
    uniq = list(dict.fromkeys(labels.tolist()))
    if species_map:
        missing = [u for u in uniq if u not in species_map]
        if missing:
            raise InputError(
                f"{where}: species_map={format_species_map(species_map)!r} has no entry for the atom labels {missing[:8]} "
                f"(labels in the file: {uniq[:8]})"
            )
        lookup = {}
        for u in uniq:
            v = species_map[u]
            if isinstance(v, str):
                if names is None or v not in names:
                    pot = f"the potential's species {list(names)}" if names is not None else "a potential without species names"
                    raise InputError(
                        f"{where}: species_map={format_species_map(species_map)!r} maps {u!r} to {v!r}, which is not among "
                        f"{pot}; map to a name of the potential or to an index 0, 1, ..."
                    )
                v = list(names).index(v)
            lookup[u] = int(v)
        return np.array([lookup[a] for a in labels.tolist()], dtype=np.int32)
    if kind in ("lammps-type", "integer"):
        try:
            t = np.array([int(u) for u in labels.tolist()], dtype=np.int64)
        except ValueError:
            raise InputError(f"{where}: atom types must be integers; got {uniq[:8]}") from None
        if kind == "integer":
            return t.astype(np.int32)
        if t.size and t.min() < 1:
            raise InputError(f"{where}: LAMMPS atom types start at 1; got type {int(t.min())}")
        return (t - 1).astype(np.int32)
    if names is None:
        if len(uniq) == 1:
            return np.zeros(labels.shape[0], np.int32)
        example = ",".join(f"{u}={i}" for i, u in enumerate(uniq[:4]))
        raise InputError(
            f"{where}: atoms are named {uniq[:8]} but the potential names no species to match them to; "
            f"map them to species indices with species_map={example!r}"
        )
    unknown = [u for u in uniq if u not in names]
    if unknown:
        example = ",".join(f"{u}={names[min(i, len(names) - 1)]}" for i, u in enumerate(unknown[:4]))
        raise InputError(
            f"{where}: atom names {unknown[:8]} are not species of the potential {list(names)}; "
            f"map them with species_map={example!r}"
        )
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[a] for a in labels.tolist()], dtype=np.int32)

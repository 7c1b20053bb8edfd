"""Integrations with other simulation codes, and the helpers they share.

- ``mdhess.plugins.jax_md``: jax-md neighbour lists driving mdhess assembly, energies for
  jax-md minimisers and integrators.
- ``mdhess.ase`` and ``mdhess.phonopy`` (top-level modules, optional extras): an ASE calculator
  and vibrations; phonopy force constants.

Structures from ASE and phonopy carry chemical elements; mdhess potentials index their
parameter tables by species 0..S-1. ``species_indices`` is the one mapping both use.
"""

import numpy as np

from .._errors import InputError


def species_indices(symbols, numbers, species=None, *, n_species=None, call: str = "species_indices"):
    """Map chemical elements to the species indices of an mdhess potential.

    Args:
        symbols: (N,) chemical symbols, e.g. ``atoms.get_chemical_symbols()``.
        numbers: (N,) atomic numbers, e.g. ``atoms.numbers``.
        species: how elements map to species:
            - None: allowed only when the potential has no species tables (``n_species`` is None):
              every atom is species 0, whatever its element;
            - a dict from element symbol (``"Ar"``) or atomic number (``18``) to a species index,
              covering every element present, e.g. ``{"Ni": 0, "P": 1}`` for Kob-Andersen NiP;
            - an (N,) integer array: used as is (one index per atom).
        n_species: S of the potential's (S, S) tables, or None.
        call: the public call named in error messages.

    Returns:
        (N,) int32 array, or None (all species 0).

    Raises:
        InputError: species=None for a potential with tables, an element missing from the dict,
            a non-integer or out-of-range index, or an array of the wrong length.
    """
    symbols = list(symbols)
    numbers = np.asarray(numbers)
    n = len(symbols)
    if species is None:
        if n_species is None:
            return None
        present = sorted(set(symbols), key=symbols.index)
        raise InputError(
            f"{call}(species=None): the potential has (S, S) parameter tables (S={n_species}), so the "
            f"mapping from elements {present} to species indices must be given, e.g. "
            f"species={{{', '.join(f'{e!r}: {k}' for k, e in enumerate(present))}}}"
        )
    if isinstance(species, dict):
        out = np.empty(n, dtype=np.int32)
        for a, (sym, z) in enumerate(zip(symbols, numbers)):
            if sym in species:
                v = species[sym]
            elif int(z) in species:
                v = species[int(z)]
            else:
                raise InputError(
                    f"{call}(species=...) has no entry for element {sym!r} (Z={int(z)}, atom {a}); "
                    f"got keys {list(species)}"
                )
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InputError(f"{call}(species=...) maps {sym!r} to {v!r}; species indices are integers")
            out[a] = v
        hi = n_species if n_species is not None else 1
        bad = (out < 0) | (out >= hi)
        if bad.any():
            a = int(np.argmax(bad))
            raise InputError(
                f"{call}(species=...) maps {symbols[a]!r} to {int(out[a])}, outside the potential's "
                f"species 0..{hi - 1}"
            )
        return out
    s = np.asarray(species)
    if s.shape != (n,):
        raise InputError(
            f"{call}(species=...) must be None, a dict element -> index, or an ({n},) array; "
            f"got shape {s.shape}"
        )
    return s

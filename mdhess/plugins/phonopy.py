"""phonopy integration: exact force constants from the mdhess Hessian of a supercell.

phonopy computes force constants by finite differences of supercell forces; it also accepts
force constants set from outside. Here they are the exact second derivatives:

    fc[i, j, a, b] = d2E / (du_ia du_jb)       (N, N, 3, 3) -- phonopy's order, not (N, 3, N, 3)

taken from the block-sparse supercell Hessian (every periodic image summed, as the supercell
forces phonopy would differentiate are). ``build_phonopy`` returns a ``phonopy.Phonopy`` with
them set, ready for ``run_mesh``, ``run_total_dos``, ``run_thermal_properties`` and band
structures.

Units: phonopy's default (VASP-like) units are eV, A and amu, giving frequencies in THz; the
potential must then be in eV and A (e.g. ``mdhess.load_potential("argon")``). Masses are
phonopy's (per element, or those set on the unit cell).

Species: as in ``mdhess.ase`` (``mdhess.plugins.species_indices``): None for a potential
without species tables, a dict element -> index (``{"Na": 0, "Cl": 1}``), or an (N,) array for
the supercell.

phonopy is imported inside the functions; ``import mdhess`` does not import it.
"""

import numpy as np

from .._errors import InputError
from ..pair._api import hessian as pair_hessian
from . import species_indices


def structure_arrays(cell_like, call: str):
    """(positions, cell, symbols, numbers) from a PhonopyAtoms or an ase.Atoms."""
    if hasattr(cell_like, "get_chemical_symbols"):  # ase.Atoms
        if not np.all(cell_like.pbc):
            raise InputError(
                f"{call}: the structure must be periodic (pbc=True); got pbc={list(cell_like.pbc)}"
            )
        return (
            np.asarray(cell_like.positions, float),
            np.asarray(cell_like.cell[:], float),
            list(cell_like.get_chemical_symbols()),
            np.asarray(cell_like.numbers),
        )
    if all(hasattr(cell_like, k) for k in ("positions", "cell", "symbols", "numbers")):  # PhonopyAtoms
        return (
            np.asarray(cell_like.positions, float),
            np.asarray(cell_like.cell, float),
            list(cell_like.symbols),
            np.asarray(cell_like.numbers),
        )
    raise InputError(
        f"{call}: expected a phonopy PhonopyAtoms or an ase.Atoms; got {type(cell_like).__name__}"
    )


def to_phonopy_atoms(cell_like, call: str):
    from phonopy.structure.atoms import PhonopyAtoms

    if isinstance(cell_like, PhonopyAtoms):
        return cell_like
    R, cell, symbols, _ = structure_arrays(cell_like, call)
    return PhonopyAtoms(symbols=symbols, positions=R, cell=cell, masses=cell_like.get_masses())


def force_constants(potential, supercell, *, species=None, atoms=None) -> np.ndarray:
    """Exact force constants of a supercell in phonopy's (N, N, 3, 3) order.

    Args:
        potential: an mdhess potential (eV and A for phonopy's default units).
        supercell: the supercell (``phonon.supercell``, a PhonopyAtoms) or an ase.Atoms.
        species: element -> species mapping (see the module docstring).
        atoms: None for full force constants (N, N, 3, 3); or the rows to keep, e.g.
            ``phonon.primitive.p2s_map`` for phonopy's compact (n_prim, N, 3, 3) form (memory
            9 n_prim N floats instead of 9 N^2).

    Returns:
        numpy float64 array, fc[i, j, a, b] = d2E/(du_ia du_jb), energy / length^2 (eV/A^2).
    """
    call = "mdhess.phonopy.force_constants"
    R, cell, symbols, numbers = structure_arrays(supercell, call)
    s = species_indices(symbols, numbers, species, n_species=potential.n_species, call=call)
    B = pair_hessian(potential, R, box=cell, species=s, format="bsr")  # canonical: one block per (i, j)
    n = R.shape[0]
    rows = np.repeat(np.arange(n), np.diff(B.indptr))
    if atoms is None:
        fc = np.zeros((n, n, 3, 3))
        fc[rows, B.indices] = B.data
        return fc
    keep = np.asarray(atoms)
    if keep.ndim != 1 or not np.issubdtype(keep.dtype, np.integer) or keep.min() < 0 or keep.max() >= n:
        raise InputError(
            f"{call}(atoms=...) must be a 1-D list of supercell atom indices 0..{n - 1}; got {atoms!r}"
        )
    where = np.full(n, -1)
    where[keep] = np.arange(keep.size)
    sel = where[rows] >= 0
    fc = np.zeros((keep.size, n, 3, 3))
    fc[where[rows[sel]], B.indices[sel]] = B.data[sel]
    return fc


def set_force_constants(phonon, potential, *, species=None, compact=False):
    """Compute exact force constants for ``phonon.supercell`` and set them on ``phonon``.

    Args:
        phonon: a ``phonopy.Phonopy``.
        potential, species: as for ``force_constants``.
        compact: store phonopy's compact (n_prim, N, 3, 3) force constants instead of full ones.

    Returns:
        ``phonon`` (for chaining).
    """
    atoms = phonon.primitive.p2s_map if compact else None
    phonon.force_constants = force_constants(potential, phonon.supercell, species=species, atoms=atoms)
    return phonon


def build_phonopy(
    potential, unitcell, supercell_matrix, *, species=None, primitive_matrix="auto", compact=False, **kwargs
):
    """A ``phonopy.Phonopy`` for ``unitcell`` with exact force constants already set.

    Args:
        potential: an mdhess potential in eV and A.
        unitcell: PhonopyAtoms or ase.Atoms (periodic).
        supercell_matrix: as for phonopy (e.g. ``[4, 4, 4]`` or a 3x3 integer matrix).
        species: element -> species mapping (see the module docstring).
        primitive_matrix: as for phonopy ("auto", "F", a 3x3 matrix, or None).
        compact: use compact force constants (less memory for large supercells).
        **kwargs: passed to ``phonopy.Phonopy``.

    Returns:
        Phonopy, ready for ``run_mesh``, ``run_total_dos``, ``run_thermal_properties``, ...
    """
    from phonopy import Phonopy

    phonon = Phonopy(
        to_phonopy_atoms(unitcell, "build_phonopy"),
        supercell_matrix=supercell_matrix,
        primitive_matrix=primitive_matrix,
        **kwargs,
    )
    return set_force_constants(phonon, potential, species=species, compact=compact)

"""ASE integration: a calculator with exact Hessians, and vibrations from them.

``MdhessCalculator(potential)`` answers ``get_potential_energy``, ``get_forces``, ``get_stress``
and, with the property names matscipy uses, ``get_property('hessian', atoms)`` (the (3N, 3N)
second derivative d2E/dR2, eV/A^2) and ``get_property('dynamical_matrix', atoms)`` (the
mass-weighted Hessian H_ij / sqrt(m_i m_j), eV/(A^2 amu)); both are scipy BSR matrices with
(3, 3) blocks, as matscipy returns them. ``vibrations(atoms, potential)`` returns
``ase.vibrations.VibrationsData`` built from the exact Hessian, so ASE's summary,
thermochemistry, DOS and jmol output work without finite differences.

Units: ASE's (eV, A, amu). The potential's parameters must be in eV and A.

Boxes: ``atoms.pbc`` all True -> periodic with ``atoms.cell``; all False -> free space (the
cell is ignored); mixed periodicity is not supported.

Species: an mdhess potential indexes its parameter tables by species 0..S-1. The calculator's
``species`` argument maps elements to them (``mdhess.plugins.species_indices``): None for a
potential without tables (all atoms alike), a dict such as ``{"Ni": 0, "P": 1}`` (symbols or
atomic numbers as keys), or an (N,) integer array.

ase is imported here and nowhere else in mdhess; ``import mdhess`` does not import this module.
"""

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .._checks import check_choice
from .._errors import InputError
from ..modes._massweight import mass_weight as mass_weight_any
from ..pair._api import hessian as pair_hessian
from ..pair._compute import energy_and_forces
from ..pair._potential import check_potential
from ..pair._prepare import Prepared, raise_nonfinite, resolve_dtype
from ..pair._stress import stress_of_prepared
from . import species_indices

MATSCIPY_FORMATS = ("sparse", "dense")
"""Hessian formats with matscipy's names: "sparse" (scipy BSR, (3, 3) blocks) or "dense"."""


def _box(atoms, call: str):
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        return np.asarray(atoms.cell[:], dtype=np.float64)
    if not pbc.any():
        return None
    raise InputError(
        f"{call}(atoms=...) has mixed periodicity pbc={pbc.tolist()}; mdhess supports fully periodic "
        "(pbc=True) or free (pbc=False) systems"
    )


def _species(atoms, potential, species, call: str):
    return species_indices(
        atoms.get_chemical_symbols(), atoms.numbers, species, n_species=potential.n_species, call=call
    )


def mass_weight(H, masses):
    """H_ij / sqrt(m_i m_j) for a (3N, 3N) dense array or scipy BSR matrix with (3, 3) blocks."""
    if hasattr(H, "tobsr"):
        H = H.tobsr(blocksize=(3, 3))
    return mass_weight_any(H, masses)


def exact_hessian(atoms, potential, *, species=None, format="dense", call: str = "hessian"):
    """d2E/dR2 of ``atoms`` under ``potential``: (3N, 3N) numpy array ("dense") or BSR ("sparse"), eV/A^2."""
    check_choice(format, MATSCIPY_FORMATS, call=call, name="format")
    box = _box(atoms, call)
    s = _species(atoms, potential, species, call)
    if format == "sparse":
        return pair_hessian(potential, atoms.positions, box=box, species=s, format="bsr")
    return np.asarray(pair_hessian(potential, atoms.positions, box=box, species=s))


class MdhessCalculator(Calculator):
    """ASE calculator for an mdhess potential: energy, forces, stress, Hessian, dynamical matrix.

    Args:
        potential: an mdhess potential in eV and A (``mdhess.lennard_jones(...)``, ...).
        species: element -> species mapping (see the module docstring); None for a potential
            without species tables.
        **kwargs: passed to ``ase.calculators.calculator.Calculator`` (label, directory, ...).

    ``get_property('hessian', atoms)`` and ``get_property('dynamical_matrix', atoms)`` return
    scipy BSR matrices (matscipy's convention); ``get_hessian(atoms, format="dense")`` gives a
    numpy array. Stress is only defined for fully periodic atoms (ASE Voigt order, eV/A^3).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "hessian", "dynamical_matrix"]
    name = "mdhess"

    def __init__(self, potential, *, species=None, **kwargs):
        check_potential(potential, "MdhessCalculator")
        Calculator.__init__(self, **kwargs)
        self.potential = potential
        self.species = species

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        call = "MdhessCalculator"
        box = _box(atoms, call)
        s = _species(atoms, self.potential, self.species, call)
        p = Prepared(self.potential, atoms.positions, box, s, call)
        E, F = energy_and_forces(*p.arrays(resolve_dtype(None, call)), n_atoms=p.n_atoms)
        E, F = float(E), np.asarray(F, dtype=np.float64)
        if not (np.isfinite(E) and np.all(np.isfinite(F))):
            raise_nonfinite(call, "energy or forces")
        self.results.update(energy=E, free_energy=E, forces=F)
        if box is not None:
            from ase.stress import full_3x3_to_voigt_6_stress

            self.results["stress"] = full_3x3_to_voigt_6_stress(stress_of_prepared(p, call))
        elif "stress" in properties:
            raise PropertyNotImplementedError(
                "MdhessCalculator: stress needs a fully periodic system (pbc=True)"
            )
        if "hessian" in properties or "dynamical_matrix" in properties:
            H = self.get_hessian(atoms, format="sparse")
            self.results["hessian"] = H
            self.results["dynamical_matrix"] = mass_weight(H, atoms.get_masses())

    def get_hessian(self, atoms=None, format="sparse", divide_by_masses=False):
        """Hessian d2E/dR2 (eV/A^2), or the dynamical matrix if ``divide_by_masses`` (eV/(A^2 amu)).

        Same signature and meaning as matscipy's ``MatscipyCalculator.get_hessian``, with formats
        "sparse" (scipy BSR, (3, 3) blocks) and "dense" (numpy (3N, 3N))."""
        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise InputError("MdhessCalculator.get_hessian(atoms=None): no atoms given and none attached")
        H = exact_hessian(
            atoms, self.potential, species=self.species, format=format, call="MdhessCalculator.get_hessian"
        )
        return mass_weight(H, atoms.get_masses()) if divide_by_masses else H

    def get_dynamical_matrix(self, atoms=None, format="sparse"):
        """Mass-weighted Hessian H_ij / sqrt(m_i m_j), eV/(A^2 amu)."""
        return self.get_hessian(atoms, format=format, divide_by_masses=True)


def vibrations(atoms, potential, *, species=None, indices=None):
    """Harmonic vibrations of ``atoms`` from the exact Hessian, as ``ase.vibrations.VibrationsData``.

    Args:
        atoms: ase.Atoms at (or near) a minimum; positions in A.
        potential: an mdhess potential in eV and A.
        species: element -> species mapping (see the module docstring).
        indices: atoms allowed to move (the others are frozen); None means all.

    Returns:
        VibrationsData: ``get_energies()`` (eV), ``get_frequencies()`` (cm^-1), ``tabulate()``,
        ``get_dos()``, ``write_jmol()``, and input for ``ase.thermochemistry``.
    """
    from ase.vibrations import VibrationsData

    H = exact_hessian(atoms, potential, species=species, format="dense", call="vibrations")
    if indices is not None:
        idx = np.asarray(indices)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or idx.size == 0:
            raise InputError(
                f"vibrations(indices=...) must be a non-empty 1-D list of atom indices; got {indices!r}"
            )
        if idx.min() < -len(atoms) or idx.max() >= len(atoms) or len(set(idx % len(atoms))) != idx.size:
            raise InputError(
                "vibrations(indices=...) must be distinct atom indices in "
                f"0..{len(atoms) - 1}; got {idx.tolist()}"
            )
        idx = idx % len(atoms)
        cols = (3 * idx[:, None] + np.arange(3)).ravel()
        H = H[np.ix_(cols, cols)]
        return VibrationsData.from_2d(atoms, H, indices=idx.tolist())
    return VibrationsData.from_2d(atoms, H)

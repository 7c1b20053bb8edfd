"""phono3py integration: exact third-order force constants of a supercell, and a ``Phono3py``
with exact fc2 and fc3 set, ready for lattice thermal conductivity.

phono3py builds fc3 by finite differences of supercell forces over pairs of displaced atoms
(hundreds to thousands of force calls, an O(d^2) error). For a pair potential the tensor is
exact and cheap: one (3, 3, 3) block per pair (``mdhess.third_order``), scattered here into
phono3py's layout

    fc3[i, j, k, a, b, c] = d3E / (du_ia du_jb du_kc)        full (N, N, N, 3, 3, 3)

or the compact (n_primitive, N, N, 3, 3, 3) form whose first index runs over the supercell atoms
of ``primitive.p2s_map``. Every periodic image within the cutoff is summed, as the supercell
forces phono3py would differentiate are.

Units: phono3py's default units are eV, A and amu (frequencies in THz, kappa in W/(m K)); the
potential must then be in eV and A (``mdhess.load_potential("argon")``). Species: as in
``mdhess.phonopy`` (None, a dict element -> index, or an (N,) array for the supercell).

Cutoffs: the results are exact for the energy as defined; third derivatives are continuous when a
pair crosses the cutoff only with the C4 switch (``switch=r_on, smoothness=4``).

phono3py is imported inside the functions; ``import mdhess`` does not import it.
"""

import numpy as np

from .._errors import InputError
from ..pair import _planner
from ..pair._taylor import third_order
from . import species_indices
from .phonopy import force_constants, structure_arrays, to_phonopy_atoms


def _rows(compact, supercell_like, n: int, call: str):
    """None (full fc3) or the supercell atoms kept as first index."""
    if compact is False or compact is None:
        return None
    if compact is True:
        primitive = getattr(supercell_like, "primitive", None)
        if primitive is None:
            raise InputError(
                f"{call}(compact=True) needs the primitive cell's atoms: pass a Phono3py object as "
                "supercell, or compact=phono3py.primitive.p2s_map (the supercell atoms to keep)"
            )
        compact = primitive.p2s_map
    keep = np.asarray(compact)
    if keep.ndim != 1 or keep.size == 0 or not np.issubdtype(keep.dtype, np.integer) or keep.min() < 0 or keep.max() >= n:
        raise InputError(
            f"{call}(compact=...) must be False, True, or a 1-D list of supercell atom indices "
            f"0..{n - 1}; got {compact!r}"
        )
    return keep


def force_constants3(supercell, potential, *, species=None, compact=False, memory_limit=None) -> np.ndarray:
    """Exact third-order force constants of a supercell in phono3py's fc3 layout.

    Args:
        supercell: the supercell: a ``Phono3py`` (its ``supercell``), a PhonopyAtoms or an
            ase.Atoms (periodic).
        potential: an mdhess potential (eV and A for phono3py's default units).
        species: element -> species mapping (see ``mdhess.phonopy``).
        compact: False: full (N, N, N, 3, 3, 3); True: phono3py's compact form
            (n_primitive, N, N, 3, 3, 3), first index over ``primitive.p2s_map`` (needs a Phono3py
            as ``supercell``); or the supercell atom indices to keep as first index.
        memory_limit: bytes or a string such as "8G" (default as for ``mdhess.hessian``).

    Returns:
        numpy float64 array fc3[i, j, k, a, b, c] = d3E / (du_ia du_jb du_kc), eV/A^3.

    Raises:
        InputError: not a periodic structure, bad species or compact. MemoryPlanError: the array
            would not fit (use compact=True).
    """
    call = "mdhess.phono3py.force_constants3"
    cell_like = getattr(supercell, "supercell", supercell)  # a Phono3py: its supercell
    R, cell, symbols, numbers = structure_arrays(cell_like, call)
    n = R.shape[0]
    keep = _rows(compact, supercell, n, call)
    rows = n if keep is None else keep.size
    nbytes = 27 * 8 * rows * n * n
    plan = _planner.MemoryPlan(f"force_constants3(N={n}, rows={rows})", nbytes, {"fc3": nbytes})
    _planner.check(plan, memory_limit, suggestion="Use compact=True (phono3py's compact fc3).")
    s = species_indices(symbols, numbers, species, n_species=potential.n_species, call=call)
    T = third_order(potential, R, box=cell, species=s)  # one (3, 3, 3) tensor per pair
    where = np.arange(n) if keep is None else np.full(n, -1)
    if keep is not None:
        where[keep] = np.arange(keep.size)
    # d3/du_x du_y du_z of phi(|r_j - r_i + shift|), x, y, z in {i, j}: s_x s_y s_z T with s = -1
    # for i and +1 for j (PairTensors' convention). The 8 (x, y, z) terms of every pair are
    # summed into the flat (rows * n * n) index by one bincount per tensor component (np.add.at
    # into the dense array cost 60x the tensors themselves at 108 atoms).
    flat, vals = [], []
    for sx, x in ((-1.0, T.i), (1.0, T.j)):
        sel = where[x] >= 0
        for sy, y in ((-1.0, T.i), (1.0, T.j)):
            for sz, z in ((-1.0, T.i), (1.0, T.j)):
                flat.append((where[x[sel]].astype(np.int64) * n + y[sel]) * n + z[sel])
                vals.append((sx * sy * sz) * np.asarray(T.T[sel]).reshape(-1, 27))
    flat, vals = np.concatenate(flat), np.concatenate(vals)
    size = rows * n * n
    fc3 = np.empty((size, 27))
    for c in range(27):
        fc3[:, c] = np.bincount(flat, weights=vals[:, c], minlength=size)
    return fc3.reshape(rows, n, n, 3, 3, 3)


def build_phono3py(
    unitcell,
    supercell_matrix,
    potential,
    *,
    species=None,
    primitive_matrix="auto",
    phonon_supercell_matrix=None,
    compact=True,
    **kwargs,
):
    """A ``phono3py.Phono3py`` with exact fc2 and fc3 set (no displacements, no force calls).

    Args:
        unitcell: PhonopyAtoms or ase.Atoms (periodic).
        supercell_matrix: the fc3 supercell, as for phono3py (e.g. ``[2, 2, 2]``).
        potential: an mdhess potential in eV and A.
        species: element -> species mapping (see ``mdhess.phonopy``).
        primitive_matrix: as for phono3py ("auto", "F", a 3x3 matrix, or None).
        phonon_supercell_matrix: a (larger) supercell for fc2, as for phono3py; None: the fc3
            supercell.
        compact: compact fc2 and fc3 (phono3py's default, less memory) or full ones.
        **kwargs: passed to ``phono3py.Phono3py``.

    Returns:
        Phono3py: set ``mesh_numbers``, then ``init_phph_interaction()`` and
        ``run_thermal_conductivity(temperatures=...)``.
    """
    from phono3py import Phono3py

    ph3 = Phono3py(
        to_phonopy_atoms(unitcell, "build_phono3py"),
        supercell_matrix=supercell_matrix,
        primitive_matrix=primitive_matrix,
        phonon_supercell_matrix=phonon_supercell_matrix,
        **kwargs,
    )
    ph3.fc3 = force_constants3(ph3, potential, species=species, compact=bool(compact))
    atoms = ph3.phonon_primitive.p2s_map if compact else None
    ph3.fc2 = force_constants(potential, ph3.phonon_supercell, species=species, atoms=atoms)
    return ph3

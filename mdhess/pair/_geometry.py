"""Boxes: free space, periodic orthorhombic and periodic triclinic cells.

Convention (ASE's): a box is None (free space), a scalar or (3,) edge lengths (orthorhombic),
or a (3, 3) matrix whose ROWS are the cell vectors. Internally every periodic box is a (3, 3)
row-vector cell; a pair displacement is d = r_j - r_i + S @ cell for an integer image S.
"""

import numpy as np

from .._checks import check_real_array
from .._errors import InputError


def as_cell(box, *, call: str = "mdhess") -> np.ndarray | None:
    """Normalise ``box`` to None (free space) or a (3, 3) float64 cell with cell vectors as rows.

    Raises:
        InputError: non-finite entries, non-positive edge lengths, a shape other than (), (3,)
            or (3, 3), or a singular (degenerate) cell.
    """
    if box is None:
        return None
    b = check_real_array(box, call=call, name="box", what="None, a number, (3,) edge lengths or a (3, 3) cell")
    if b.shape == () or b.shape == (1,):
        b = np.full(3, float(b.reshape(())))
    if b.shape == (3,):
        if not np.all(np.isfinite(b)) or np.any(b <= 0):
            raise InputError(f"{call}(box=...) edge lengths must be finite and > 0; got {b.tolist()}")
        return np.diag(b)
    if b.shape != (3, 3):
        raise InputError(
            f"{call}(box=...) must be None, a scalar, (3,) edge lengths or a (3, 3) cell "
            f"(rows are cell vectors); got shape {b.shape}"
        )
    if not np.all(np.isfinite(b)):
        raise InputError(f"{call}(box=...) has non-finite entries: {b.tolist()}")
    norms = np.linalg.norm(b, axis=1)
    vol = abs(np.linalg.det(b))
    if np.any(norms == 0) or vol <= 1e-10 * np.prod(norms):
        raise InputError(
            f"{call}(box=...) is singular (volume {vol:.3g} for cell vector lengths "
            f"{norms.tolist()}); the rows must be three independent cell vectors"
        )
    return b


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell, (3,): volume / |a_j x a_k|."""
    vol = abs(np.linalg.det(cell))
    a, b, c = cell
    return vol / np.array(
        [np.linalg.norm(np.cross(b, c)), np.linalg.norm(np.cross(c, a)), np.linalg.norm(np.cross(a, b))]
    )


def is_orthorhombic(cell: np.ndarray) -> bool:
    return bool(np.all(cell == np.diag(np.diag(cell))))


def image_counts(cell: np.ndarray, cutoff: float):
    """(heights, n, scanned, inside): perpendicular heights h_k, the shifts n_k = ceil(rc / h_k)
    to scan along each cell vector, the number of scanned image shifts prod(2 n_k + 1) and the
    expected number of lattice points inside the cutoff sphere, (4/3) pi rc^3 / V (floats)."""
    h = perpendicular_widths(cell)
    with np.errstate(over="ignore", invalid="ignore"):
        n = np.ceil(float(cutoff) / h)
        scanned = float(np.prod(2.0 * n + 1.0))
        inside = 4.0 / 3.0 * np.pi * float(cutoff) ** 3 / abs(float(np.linalg.det(cell)))
    return h, n, scanned, inside

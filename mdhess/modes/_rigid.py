"""Rigid-body directions of a mass-weighted Hessian: building them, projecting them out, and
merging them back as exact zero modes.

Y holds the orthonormal mass-weighted rigid-body directions: translations sqrt(m_i) e_a, and
rotations sqrt(m_i) (e_a x (r_i - r_com)) about the centre of mass (2 for a linear molecule, 0
for one atom). The solvers return the spectrum of Q A Q, Q = I - Y Y^T, on the complement of Y;
``merge_zero_modes`` sorts the projected directions back in with eigenvalue 0.
"""

import numpy as np

from .._errors import InputError


def rigid_body_basis(masses, positions=None, *, rotations: bool = True):
    """(3N, c) orthonormal mass-weighted rigid-body directions: 3 translations, plus the rotations
    about the centre of mass when positions are given (2 for a linear molecule, 0 for one atom).
    """
    m = np.asarray(masses, dtype=np.float64)
    n = m.size
    sm = np.sqrt(m)
    cols = []
    for a in range(3):
        t = np.zeros((n, 3))
        t[:, a] = sm
        cols.append(t.ravel())
    if rotations and positions is not None:
        R = np.asarray(positions, dtype=np.float64)
        r = R - (m[:, None] * R).sum(0) / m.sum()
        for a in range(3):
            e = np.zeros(3)
            e[a] = 1.0
            cols.append((sm[:, None] * np.cross(e, r)).ravel())
    Y = np.stack(cols, axis=1)
    U, s, _ = np.linalg.svd(Y / np.linalg.norm(Y, axis=0).clip(1e-300), full_matrices=False)
    rank = int(np.sum(s > 1e-8 * s[0]))
    Yt = np.linalg.qr(Y[:, :3])[0]  # keep the three translations as the first (nice) vectors
    if rank == 3:
        return Yt
    extra = U[:, :rank] - Yt @ (Yt.T @ U[:, :rank])
    Ue = np.linalg.svd(extra, full_matrices=False)[0]
    return np.hstack([Yt, Ue[:, : rank - 3]])


def project_out(U, Y):
    """(I - Y Y^T) U for orthonormal columns Y (U itself when Y is None or empty)."""
    if Y is None or Y.shape[1] == 0:
        return U
    return U - Y @ (Y.T @ U)


def rotations_wanted(project: str, positions, cell) -> bool:
    """Whether ``normal_modes(project=...)`` (a valid choice) projects rotations besides the
    translations; InputError for "rigid" without positions or in a periodic box."""
    if project == "rigid":
        if positions is None:
            raise InputError("normal_modes(project='rigid') needs positions=... to build the rotations")
        if cell is not None:
            raise InputError(
                "normal_modes(project='rigid'): rotations are not zero modes of a periodic box; "
                "use 'translations'"
            )
    return (project == "rigid") or (project == "auto" and cell is None and positions is not None)


def rigid_directions(project, masses, positions, *, rotations: bool, n3: int):
    """(Y, label): the (3N, c) directions projected out for ``project`` and their description
    ("none", "translations", "translations + 3 rotations", ...)."""
    if project == "none":
        return np.zeros((n3, 0)), "none"
    Y = rigid_body_basis(masses, positions, rotations=rotations)
    return Y, "translations" + (f" + {Y.shape[1] - 3} rotations" if Y.shape[1] > 3 else "")


def merge_zero_modes(w, V, Y, k: int, which: str):
    """(eigenvalues, vectors): the vibrational pairs (w, V) with the projected directions Y sorted
    in as exact zero modes, the ``k`` lowest (or highest) kept."""
    c = Y.shape[1]
    if which == "lowest":
        w_all = np.concatenate([w, np.zeros(c)])
        V_all = np.hstack([V, Y])
        order = np.argsort(w_all, kind="stable")[:k]
    else:
        w_all = np.concatenate([np.zeros(c), w])
        V_all = np.hstack([Y, V])
        order = np.argsort(w_all, kind="stable")[-k:]
    return w_all[order], V_all[:, order]

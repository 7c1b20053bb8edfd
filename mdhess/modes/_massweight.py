"""Mass weighting, written once: A = M^-1/2 H M^-1/2 (M the masses, three per atom).

Used by the normal-mode solvers and by the ASE plugin's dynamical matrix.
"""

import numpy as np
import scipy.sparse


def mass_weight(H, masses):
    """H_ij / sqrt(m_i m_j) in the layout it came in.

    Args:
        H: (3N, 3N) dense array (numpy or JAX), scipy BSR with (3, 3) blocks, or any scipy
            sparse matrix.
        masses: (N,) masses, mass units.

    Returns:
        A numpy array for a dense H, a BSR matrix (a copy, blocks scaled per atom pair) for a
        BSR H with (3, 3) blocks, a CSR matrix for any other sparse H; float64 where H is.
    """
    w = 1.0 / np.sqrt(np.asarray(masses, dtype=np.float64))
    if scipy.sparse.issparse(H):
        if isinstance(H, scipy.sparse.bsr_matrix) and H.blocksize == (3, 3):
            B = H.copy()
            rows = np.repeat(np.arange(B.shape[0] // 3), np.diff(B.indptr))
            B.data = B.data * (w[rows] * w[B.indices])[:, None, None]
            return B
        w3 = np.repeat(w, 3)
        C = H.tocsr().astype(np.float64)
        return (scipy.sparse.diags(w3) @ C @ scipy.sparse.diags(w3)).tocsr()
    w3 = np.repeat(w, 3)
    return np.asarray(H) * w3[:, None] * w3[None, :]

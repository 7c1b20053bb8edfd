"""One frame of an elastic-constants file (``mdhess elastic``), written and read here and nowhere
else (docs/file-formats.md, "Elastic-constants files").

A frame group ``frames/<slot:06d>`` holds the frame as used (``positions``, ``box``, ``species``,
``masses`` when known: ``_frames.write_frame_arrays``) and:

    C, born, stress_term, nonaffine   (6, 6) float64, Voigt order xx yy zz yz xz xy, engineering shears
    stress                            (3, 3) float64, (1/V) dE/d(strain), tension positive
    rattlers                          (r,) int64 atoms with no interacting neighbour
    displacements                     (6, N, 3) float64, only when asked for (non-affine field per unit strain)
    attributes: volume, n_zero_modes, max_force, solver, iterations, residual, seconds,
                bulk_modulus, shear_modulus (Hill averages)

The file's root carries ``mdhess_kind = "elastic"`` and the attributes ``ResultRun`` writes.
"""

import numpy as np

from ._frames import dataset, write_frame_arrays, write_quench

MATRICES = ("C", "born", "stress_term", "nonaffine")
VOIGT_ORDER = "xx yy zz yz xz xy"


def write_elastic_frame(group, frame, result, *, displacements: bool = False, quench=None) -> None:
    """Fill one frame group of an elastic-constants file.

    Args:
        group: the frame's h5py group.
        frame: the ``Frame`` the constants belong to.
        result: ``mdhess.ElasticConstants`` of the frame.
        displacements: also store the (6, N, 3) non-affine displacement fields (when computed).
        quench: the frame's minimisation (``mdhess.minimize``'s result), stored as ``quench_*``
            attributes, or None.
    """
    write_frame_arrays(group, frame)
    write_quench(group, quench)
    for name in MATRICES:
        group.create_dataset(name, data=np.asarray(getattr(result, name), dtype=np.float64))
    group.create_dataset("stress", data=np.asarray(result.stress, dtype=np.float64))
    group.create_dataset("rattlers", data=np.asarray(result.rattlers, dtype=np.int64))
    if displacements and result.displacements is not None:
        dataset(group, "displacements", np.asarray(result.displacements, dtype=np.float64))
    a = group.attrs
    a["volume"] = float(result.volume)
    a["n_zero_modes"] = int(result.n_zero_modes)
    a["max_force"] = float(result.max_force)
    a["solver"] = str(result.solver)
    a["iterations"] = int(result.iterations)
    a["residual"] = float(result.residual)
    a["seconds"] = float(result.seconds)
    a["voigt_order"] = VOIGT_ORDER
    K, G = result.moduli("hill")
    a["bulk_modulus"] = K
    a["shear_modulus"] = G


def read_elastic_frame(result_file, slot: int):
    """The elastic constants stored in slot ``slot`` of an elastic-constants file.

    Args:
        result_file: an open ``ResultFile`` of kind "elastic".
        slot: position in the file (negative counts from the end).

    Returns:
        ``mdhess.ElasticConstants`` (``displacements`` None unless they were stored).

    Raises:
        InputError: slot out of range, frame not marked complete, unreadable data.
    """
    from ..modes._elasticity import ElasticConstants

    g = result_file.group(slot)
    a = dict(g.attrs)
    arr = {name: result_file.array(g, name) for name in (*MATRICES, "stress", "rattlers", "displacements")}
    return ElasticConstants(
        C=arr["C"], born=arr["born"], stress_term=arr["stress_term"], nonaffine=arr["nonaffine"], stress=arr["stress"],
        displacements=arr["displacements"], volume=float(a.get("volume", np.nan)), n_zero_modes=int(a.get("n_zero_modes", 0)),
        rattlers=arr["rattlers"] if arr["rattlers"] is not None else np.zeros(0, np.int64),
        max_force=float(a.get("max_force", np.nan)), solver=str(a.get("solver", "")), iterations=int(a.get("iterations", 0)),
        residual=float(a.get("residual", np.nan)), seconds=float(a.get("seconds", np.nan)),
    )  # fmt: skip


def read_elastic(path, frame: int = 0):
    """Read one frame's elastic constants from a file written by ``mdhess elastic``.

    Args:
        path: the elastic-constants file.
        frame: position in the file (negative counts from the end); the source frame of each
            position is in the file's ``frame_index`` dataset.

    Returns:
        ``mdhess.ElasticConstants`` as ``mdhess.elastic_constants`` returned it (``displacements``
        None unless the run stored them).

    Raises:
        InputError: missing, non-HDF5, incomplete or non-elastic file; frame out of range.
    """
    from ._readers import ResultFile

    with ResultFile(path, "elastic") as r:
        return read_elastic_frame(r, frame)

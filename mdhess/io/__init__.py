"""HDF5 input and output: trajectories (H5MD 1.1, MDTraj, minimal layout) in, Hessians and
normal modes out. Needs h5py, imported only when this package is used (``import mdhess`` stays
light). File layouts are documented in docs/file-formats.md."""

from ._results import ResultFile as ResultFile
from ._results import ResultRun as ResultRun
from ._results import read_hessian as read_hessian
from ._trajectory import LAYOUTS as LAYOUTS
from ._trajectory import Frame as Frame
from ._trajectory import Trajectory as Trajectory
from ._trajectory import length_factor as length_factor
from ._trajectory import read_trajectory as read_trajectory
from ._writers import write_h5md as write_h5md
from ._writers import write_mdtraj as write_mdtraj
from ._writers import write_minimal as write_minimal


def read_modes(path, frame: int = 0):
    """Read one frame's normal modes from a file written by ``mdhess modes``.

    Args:
        path: the modes file.
        frame: position in the file (negative counts from the end); the source frame of each
            position is in the file's ``frame_index`` dataset.

    Returns:
        ``mdhess.NormalModes`` as ``mdhess.normal_modes`` returned it: eigenvalues (m,),
        vectors (3N, m) mass-weighted, masses, units, solver, positions and box of the frame;
        frequencies, displacements, participation ratios, thermodynamics() and plot_dos()
        work as on the original.
    """
    from ..modes._nma import NormalModes
    from .._units import unit_system
    from ._results import ResultFile

    with ResultFile(path, "modes") as r:
        g = r.group(frame)
        a = dict(g.attrs)
        units = r.json_attr("units")
        return NormalModes(
            eigenvalues=r.array(g, "eigenvalues"),
            vectors=r.array(g, "vectors"),
            masses=r.array(g, "masses"),
            units=unit_system(units) if units else None,
            solver=str(a.get("solver", "")),
            n_projected=int(a.get("n_projected", 0)),
            projected=str(a.get("projected", "")),
            zero_tol=float(a.get("zero_tol", 1e-8)),
            scale=float(a.get("scale", 1.0)),
            positions=r.array(g, "positions"),
            box=r.array(g, "box"),
            which=str(a.get("which", "lowest")),
            info={"source_frame": int(a.get("source_frame", -1))},
        )

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

    Returns:
        A dict with ``eigenvalues`` (m,), ``frequencies`` (m,), ``vectors`` (3N, m, mass-weighted,
        orthonormal columns), ``displacements`` (3N, m, Cartesian), ``participation_ratio`` (m,),
        ``units`` and the frame's attributes (``source_frame``, ``solver``, thermodynamics at the
        requested temperature, ...).
    """
    from ._results import read_modes_arrays

    return read_modes_arrays(path, frame)

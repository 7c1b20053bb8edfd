"""HDF5 input and output: trajectories (H5MD 1.1, MDTraj, minimal layout) in, Hessians and
normal modes out. Needs h5py, imported only when this package is used (``import mdhess`` stays
light). File layouts are documented in docs/file-formats.md; every reader and writer of them
lives in this package (``_trajectory``, ``_writers``: trajectories; ``_results``: result files;
``_frames``: one frame of a result file)."""

from ._readers import ResultFile as ResultFile
from ._readers import read_hessian as read_hessian
from ._readers import read_modes as read_modes
from ._results import ResultRun as ResultRun
from ._trajectory import TRAJECTORY_LAYOUTS as TRAJECTORY_LAYOUTS
from ._trajectory import Frame as Frame
from ._trajectory import Trajectory as Trajectory
from ._trajectory import length_factor as length_factor
from ._trajectory import read_trajectory as read_trajectory
from ._writers import write_h5md as write_h5md
from ._writers import write_mdtraj as write_mdtraj
from ._writers import write_minimal as write_minimal

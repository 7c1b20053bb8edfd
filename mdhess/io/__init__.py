"""Input and output: trajectories in (HDF5: H5MD 1.1, MDTraj, minimal layout; extended XYZ and
LAMMPS dump / data files through ASE; DCD, XTC, TRR through MDAnalysis), Hessians and normal
modes out (HDF5). h5py is imported when this package is used, ASE and MDAnalysis when such a
file is read (``import mdhess`` stays light). File layouts are documented in docs/file-formats.md; every reader and writer of
them lives in this package (``_trajectory``, ``_formats``, ``_species``, ``_writers``,
``_convert``: trajectories; ``_results``: result files; ``_frames``: one frame of a result file)."""

from ._convert import convert_trajectory as convert_trajectory
from ._elastic import read_elastic as read_elastic
from ._formats import TRAJECTORY_FORMATS as TRAJECTORY_FORMATS
from ._formats import read_trajectory as read_trajectory
from ._phonons import read_phonons as read_phonons
from ._phonons import write_phonons as write_phonons
from ._readers import ResultFile as ResultFile
from ._readers import read_frame_quench as read_frame_quench
from ._readers import read_hessian as read_hessian
from ._readers import read_modes as read_modes
from ._results import ResultRun as ResultRun
from ._species import parse_species_map as parse_species_map
from ._trajectory import TRAJECTORY_LAYOUTS as TRAJECTORY_LAYOUTS
from ._trajectory import Frame as Frame
from ._trajectory import Trajectory as Trajectory
from ._trajectory import length_factor as length_factor
from ._writers import write_h5md as write_h5md
from ._writers import write_mdtraj as write_mdtraj
from ._writers import write_minimal as write_minimal

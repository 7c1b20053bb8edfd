"""``import mdhess.ase`` keeps working: the ASE integration lives in ``mdhess.plugins.ase``."""

from .plugins.ase import MdhessCalculator as MdhessCalculator
from .plugins.ase import exact_hessian as exact_hessian
from .plugins.ase import mass_weight as mass_weight
from .plugins.ase import vibrations as vibrations

"""``import mdhess.phonopy`` keeps working: the phonopy integration lives in ``mdhess.plugins.phonopy``."""

from .plugins.phonopy import build_phonopy as build_phonopy
from .plugins.phonopy import force_constants as force_constants
from .plugins.phonopy import set_force_constants as set_force_constants

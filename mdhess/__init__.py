"""mdhess: exact, memory-bounded Hessians of molecular pair potentials in JAX.

The public surface is this module. Heavy optional integrations (HDF5 I/O, ASE, phonopy, the
CLI) are imported lazily, so ``import mdhess`` stays light.

mdhess enables JAX's float64 mode on import (validation and eigen-analysis need it); set the
environment variable ``MDHESS_NO_X64=1`` before importing to leave JAX's setting alone.
"""

import os as _os

import jax as _jax

if not _os.environ.get("MDHESS_NO_X64"):
    _jax.config.update("jax_enable_x64", True)

from ._api import energy as energy
from ._api import forces as forces
from ._api import hessian as hessian
from ._api import hvp as hvp
from ._assemble import HessianOperator as HessianOperator
from ._assemble import MatrixFreeOperator as MatrixFreeOperator
from ._assemble import StoredBlockOperator as StoredBlockOperator
from ._elastic import ElasticNetwork as ElasticNetwork
from ._elastic import elastic_network as elastic_network
from ._errors import InputError as InputError
from ._errors import MemoryPlanError as MemoryPlanError
from ._errors import NonFiniteError as NonFiniteError
from ._kernels import KERNELS as KERNELS
from ._potential import PairPotential as PairPotential
from ._potential import buckingham as buckingham
from ._potential import coulomb as coulomb
from ._potential import gaussian as gaussian
from ._potential import harmonic as harmonic
from ._potential import lennard_jones as lennard_jones
from ._potential import morse as morse
from ._potential import pair_potential as pair_potential
from ._potential import soft_sphere as soft_sphere
from ._potential import yukawa as yukawa

__version__ = "0.1.0"

# Lazily imported public names: module -> names. Keeps `import mdhess` light (no h5py, ase,
# phonopy, typer, matplotlib) and lets optional integrations fail only when used.
_LAZY = {
    "mdhess._autodiff": ("energy_fn", "forces_fn", "hessian_of"),
    "mdhess._planner": ("estimate_memory", "MemoryPlan"),
    "mdhess._stress": ("stress",),
    "mdhess._nma": ("normal_modes", "NormalModes"),
    "mdhess._units": ("UNIT_SYSTEMS",),
    "mdhess._library": ("load_potential", "list_potentials"),
    "mdhess.io": ("read_hessian", "read_modes", "read_trajectory"),
}
_LAZY_NAMES = {name: mod for mod, names in _LAZY.items() for name in names}


def __getattr__(name):
    mod = _LAZY_NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module 'mdhess' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY_NAMES))

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

from ._errors import InputError as InputError
from ._errors import MemoryPlanError as MemoryPlanError
from ._errors import NonFiniteError as NonFiniteError
from ._errors import NotAtEquilibriumWarning as NotAtEquilibriumWarning
from ._version import __version__ as __version__
from .pair._api import energy as energy
from .pair._api import forces as forces
from .pair._api import hessian as hessian
from .pair._api import hvp as hvp
from .pair._elastic import ElasticNetwork as ElasticNetwork
from .pair._elastic import elastic_network as elastic_network
from .pair._kernels import KERNELS as KERNELS
from .pair._operators import HessianOperator as HessianOperator
from .pair._operators import MatrixFreeOperator as MatrixFreeOperator
from .pair._operators import StoredBlockOperator as StoredBlockOperator
from .pair._potential import PairPotential as PairPotential
from .pair._potential import Potential as Potential
from .pair._potential import buckingham as buckingham
from .pair._potential import coulomb as coulomb
from .pair._potential import gaussian as gaussian
from .pair._potential import harmonic as harmonic
from .pair._potential import lennard_jones as lennard_jones
from .pair._potential import morse as morse
from .pair._potential import pair_potential as pair_potential
from .pair._potential import soft_sphere as soft_sphere
from .pair._potential import yukawa as yukawa

# Lazily imported public names: module -> names. Keeps `import mdhess` light (no h5py, ase,
# phonopy, typer, matplotlib) and lets optional integrations fail only when used.
_LAZY = {
    "mdhess.pair._autodiff": ("energy_fn", "forces_fn", "hessian_of"),
    "mdhess.pair._planner": ("estimate_memory", "MemoryPlan"),
    "mdhess.pair._stress": ("stress",),
    "mdhess.pair._batch": ("hessian_frames",),
    "mdhess.pair._minimize": ("minimize", "Minimized"),
    "mdhess.pair._taylor": ("taylor", "contract3", "contract4", "third_order", "PairTensors"),
    "mdhess.modes._nma": ("normal_modes", "NormalModes"),
    "mdhess.modes._nonlinear": ("nonlinear_mode", "NonlinearMode"),
    "mdhess.pair._sharded": ("ShardedHessianOperator",),
    "mdhess.pair._dynmat": ("dynamical_matrix", "DynamicalMatrix"),
    "mdhess.modes._phonons": ("phonons", "Phonons", "BandStructure", "PhononDOS"),
    "mdhess.modes._elasticity": ("elastic_constants", "ElasticConstants"),
    "mdhess._units": ("UNIT_SYSTEMS",),
    "mdhess.pair._library": ("load_potential", "list_potentials"),
    "mdhess.io": ("read_hessian", "read_modes", "read_trajectory"),
}
_LAZY_NAMES = {name: mod for mod, names in _LAZY.items() for name in names}


_SUBMODULES = ("distributed",)  # imported on first attribute access: mdhess.distributed.initialize(...)


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"mdhess.{name}")
    mod = _LAZY_NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module 'mdhess' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY_NAMES))

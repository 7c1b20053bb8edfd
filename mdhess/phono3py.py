"""``import mdhess.phono3py``: the phono3py integration lives in ``mdhess.plugins.phono3py``."""

from .plugins.phono3py import build_phono3py as build_phono3py
from .plugins.phono3py import force_constants3 as force_constants3

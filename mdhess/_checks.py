"""Argument checks shared by every public call: each raises ``InputError`` naming the call, the
argument and the value found (STYLE.md: "errors name the public call and what was found")."""

import numpy as np

from ._errors import InputError


def check_choice(value, choices, *, call: str = "", name: str = "", label: str | None = None):
    """``value`` if it is one of ``choices`` (strings), else InputError.

    The message names ``call(name=...)``, or ``label`` when given (a CLI flag such as
    ``"--format"``, or a file key).
    """
    if not isinstance(value, str) or value not in choices:
        what = label if label is not None else f"{call}({name}=...)"
        raise InputError(f"{what} must be one of {tuple(choices)}; got {value!r}")
    return value


def check_positions(positions, *, call: str, name: str = "positions", min_atoms: int = 1, n_atoms=None,
                    shape_hint: str = "") -> np.ndarray:  # fmt: skip
    """(N, 3) float64 numpy copy of ``positions``, finite.

    Args:
        call, name: the public call and argument named in errors.
        min_atoms: fewest atoms accepted.
        n_atoms: the exact N required (e.g. to match a Hessian), or None.
        shape_hint: appended to the shape error (e.g. " to match H").
    """
    try:
        R = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{call}({name}=...) must be a numeric (n_atoms, 3) array; got {type(positions).__name__}") from exc
    want = "n_atoms" if n_atoms is None else str(n_atoms)
    if R.ndim != 2 or R.shape[1] != 3 or (n_atoms is not None and R.shape[0] != n_atoms):
        raise InputError(f"{call}({name}=...) expects shape ({want}, 3){shape_hint}; got {R.shape}")
    if R.shape[0] < min_atoms:
        raise InputError(f"{call}({name}=...) needs at least {min_atoms} atom(s); got {R.shape[0]}")
    bad = ~np.all(np.isfinite(R), axis=1)
    if bad.any():
        a = int(np.argmax(bad))
        raise InputError(f"{call}({name}=...) has non-finite coordinates at atom {a}: {R[a].tolist()}")
    return R

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
    R = check_real_array(positions, call=call, name=name, what="a numeric (n_atoms, 3) array of real numbers")
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


def check_real_array(value, *, call: str, name: str, what: str = "a real number or array") -> np.ndarray:
    """``value`` as a float64 numpy array, refusing what is not a real number: bools, strings,
    bytes, complex numbers and objects (numpy would turn ``True`` into 1.0 and ``'6'`` into 6.0,
    and drop an imaginary part with only a warning).

    The message names ``call(name=...)`` and the value found; ``what`` says what was expected.
    """
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested sequences
        raise InputError(f"{call}({name}=...) must be {what}; got {_show(value)}") from exc
    kind = a.dtype.kind
    if kind in "iuf":
        return a.astype(np.float64, copy=False)
    if kind == "O":  # e.g. Python ints beyond int64, Decimal, Fraction, None inside a list
        flat = a.ravel().tolist()
        if flat and all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) for x in flat):
            return a.astype(np.float64)
    found = {"b": "bool", "U": "string", "S": "bytes", "c": "complex", "O": "object"}.get(kind, str(a.dtype))
    raise InputError(f"{call}({name}=...) must be {what}; got {found} {_show(value)}")


def _show(value, limit: int = 80) -> str:
    s = " ".join(repr(value).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."

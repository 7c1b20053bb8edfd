"""Progress of long library calls on stderr, only when asked (``progress=True``): a tqdm bar for
loops with a count (FIRE steps, LOBPCG iterations, shift-invert solves), one status line per
phase with its time for single long calls (a dense ``eigh``, a factorisation). The default is
quiet: a disabled ``Status`` does nothing.
"""

import sys
import time


class Status:
    """A tqdm bar (``total`` steps) and phase lines, on stderr; does nothing when not ``enabled``.

    Args:
        enabled: show anything at all.
        desc: what is running ("normal_modes (lobpcg)").
        total: steps expected (an upper bound such as maxiter is fine), or None (unknown).
        unit: the step's name ("it", "solve", "step").
        bar: show a bar counting steps (default: when ``total`` is given); False: phases only.
    """

    def __init__(self, enabled: bool, desc: str, *, total: int | None = None, unit: str = "it", bar=None):
        self.enabled, self.desc = bool(enabled), desc
        self.bar = None
        self.t_phase = time.perf_counter()
        self.phase_name = None
        if self.enabled and (total is not None if bar is None else bar):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)

    def step(self, n: int = 1, info: str = "") -> None:
        """``n`` more steps done; ``info`` shown after the bar (e.g. the largest residual)."""
        if self.bar is None:
            return
        if info:
            self.bar.set_postfix_str(info, refresh=False)
        self.bar.update(n)

    def phase(self, name: str) -> None:
        """A new phase begins: the previous one's time and the new one's name on one line each."""
        if not self.enabled:
            return
        self._end_phase()
        self.phase_name, self.t_phase = name, time.perf_counter()
        self._line(f"{self.desc}: {name} ...")

    def _end_phase(self):
        if self.phase_name is not None:
            self._line(f"{self.desc}: {self.phase_name} done in {time.perf_counter() - self.t_phase:.2f} s")
            self.phase_name = None

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        self._end_phase()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_progress(value, call: str) -> bool:
    """``value`` if it is True or False, else InputError naming ``call(progress=...)``."""
    import numpy as np

    from ._errors import InputError

    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{call}(progress=...) must be True or False; got {value!r}")
    return bool(value)

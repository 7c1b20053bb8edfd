"""Exceptions raised at mdhess's public, non-jitted boundary."""


class InputError(ValueError):
    """Bad input to a public mdhess call. The message names the argument and the value found."""


class MemoryPlanError(MemoryError):
    """A request whose estimated memory exceeds the allowed limit, refused before allocating."""


class NonFiniteError(FloatingPointError):
    """A computed quantity (block, energy) came out NaN or infinite."""

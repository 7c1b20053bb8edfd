"""The package version, in one place: pyproject.toml reads it (hatch's version source), and
``mdhess.__version__`` and the file writers in ``mdhess.io`` import it from here."""

__version__ = "0.1.0"

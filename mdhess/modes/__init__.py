"""Normal modes: mass weighting, rigid-body projection, dense / shift-invert / LOBPCG solvers,
the ``NormalModes`` result, harmonic thermodynamics. Built on ``mdhess.pair``'s Hessians and
operators; knows nothing of files or the CLI. See docs/architecture.md."""

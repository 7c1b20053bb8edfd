"""The pair engine: potentials, pair enumeration, the 3x3 blocks and their layouts.

Data flow (each module imports only those before it):
kernels -> potential / elastic / library -> geometry -> pairs -> blocks -> prepare -> compute
-> layouts / operators -> api, batch, stress, autodiff (planner beside them).
See docs/architecture.md. The public names are re-exported by ``mdhess``.
"""

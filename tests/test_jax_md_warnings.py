"""The jax-md plugin emits no FutureWarning: jax-md's sparse neighbour lists scatter int64 indices
into int32 arrays under x64 (jax_md/partition.py, prune_neighbor_list_sparse), which JAX warns
about at each trace; ``mdhess.plugins.jax_md`` filters exactly that message around jax-md's list
calls (``JAX_MD_INDEX_WARNING``) and nothing else."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mdhess
from mdhess.plugins import jax_md as mjx


@pytest.fixture(autouse=True)
def standard_promotion():
    # jax-md's own code mixes float32 boxes and float64 positions (as in test_jax_md.py)
    with jax.numpy_dtype_promotion("standard"):
        yield


def _lattice(n_side, a, jitter, seed):
    g = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    return g + np.random.default_rng(seed).normal(0.0, jitter, g.shape)


# An atom count no other test uses: JAX warns when it traces jax-md's list functions, once per shape
# and process, so a fresh shape makes this test see the trace (it would pass vacuously otherwise).
# slow set: each case compiles fresh jax-md lists (~14 s); the exact filter is checked in the default run below
@pytest.mark.slow
@pytest.mark.parametrize("fmt,n_atoms", [("Sparse", 119), ("OrderedSparse", 118)])
def test_jax_md_plugin_use_emits_no_future_warning(fmt, n_atoms):
    pot = mdhess.lennard_jones(sigma=1.0, epsilon=1.0, cutoff=2.5)
    R = _lattice(5, 1.2, 0.05, 0)[:n_atoms]  # in a box of 6: brute-force candidates, sparse pruning
    box = 6.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # any FutureWarning fails the test
        nl = mjx.neighbor_list(pot, box, format=fmt, dr_threshold=0.2)
        nbrs = nl.allocate(R)
        nbrs = nbrs.update(R + 0.01)  # the list's own update
        if fmt == "OrderedSparse":  # slow set: the other ways a list is updated (each traces anew)
            nbrs = nl.update(R + 0.3, nbrs)  # the functions' update (rebuilds: beyond the skin)
            nbrs = jax.jit(lambda nb, x: nb.update(x))(nbrs, jnp.asarray(R))  # traced in the user's jit
        assert not bool(nbrs.did_buffer_overflow)
        H = mjx.hessian(pot, R, nbrs, box=box, format="bsr")
    assert H.shape == (3 * n_atoms, 3 * n_atoms) and H.nnz > 0


def test_the_filter_is_exactly_jax_mds_index_warning():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with mjx.quiet_index_dtype_warning():
            warnings.warn("scatter inputs have incompatible types: cannot safely cast value from dtype=int64 to "
                          "dtype=int32 with jax_numpy_dtype_promotion=standard.", FutureWarning)  # fmt: skip
            warnings.warn("some other future change", FutureWarning)
    assert [str(w.message) for w in seen] == ["some other future change"]

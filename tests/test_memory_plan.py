"""The streamed BSR assembly and the memory planner (issue 14, lean assembly).

- the matrix is the same, bit for bit, however the pair list is cut into chunks, with the
  diagonal sums formed on the host or on the device, image duplicates (small cells) included;
- assembly stays within its plan: peak RSS over the baseline, in a fresh process, is bounded by
  ``estimate_memory``'s figure, and its "output" part is the returned bytes exactly;
- a request that cannot fit is refused before any pair list is built, from the pair count the
  density and cutoff predict, with a message naming the sizes.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import mdhess
from mdhess.pair import _assembly, _layouts
from mdhess.pair import _potential as _potential_module
from mdhess.pair._prepare import Prepared


def fcc(k, a=1.5496, rattle=0.03, seed=0):
    """(positions, edge) of a k^3-cell fcc crystal near the LJ minimum, rattled."""
    b = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    R = (g + b[None]).reshape(-1, 3) * a
    return R + np.random.default_rng(seed).normal(scale=rattle, size=R.shape), k * a


LJ = mdhess.lennard_jones(cutoff=2.5)


@pytest.mark.parametrize("cells", [3, 4])  # 3: cutoff > half the box (image duplicates summed); 4: none
def test_streamed_bsr_is_the_same_matrix_whatever_the_chunks(cells, monkeypatch):
    R, L = fcc(cells)
    cell = np.array([[L, 0, 0], [0.2 * L, L, 0], [0.1 * L, 0.3 * L, L]])  # triclinic
    ref = mdhess.hessian(LJ, R, box=cell, format="bsr")  # one chunk, host diagonal sums
    assert ref.has_canonical_format and ref.blocksize == (3, 3)
    p = Prepared(LJ, R, cell, None, "test")
    assert p.n_pairs > 3 * 1000  # several chunks below
    dup = _layouts.bsr_pattern(p.pairs.i, p.pairs.j, len(R)).starts is not None
    assert dup == (cells == 3)
    monkeypatch.setattr(_assembly, "chunk_pairs", lambda: 1000)  # several chunks, the last padded
    out = {}
    for host in (True, False):  # diagonal sums on the host (np.add.at) or the device, chunk by chunk
        monkeypatch.setattr(_layouts, "HOST_BSR_MAX_PAIRS", 1 << 30 if host else 0)
        out[host] = M = mdhess.hessian(LJ, R, box=cell, format="bsr")
        assert M.has_canonical_format
        assert np.array_equal(M.indptr, ref.indptr) and np.array_equal(M.indices, ref.indices)
        # XLA's kernel for another array length splits its vector loops elsewhere: a block's
        # entries may move by an ulp (measured <= 7e-16 of the largest entry)
        assert np.abs(M.data - ref.data).max() <= 1e-15 * np.abs(ref.data).max()
    # the same blocks summed in the same order, on either side: equal bit for bit
    assert np.array_equal(out[True].data, out[False].data)
    # and it is the Hessian: the dense layout (a separate scatter) to a few ulps (TOL["layout"])
    H = np.asarray(mdhess.hessian(LJ, R, box=cell))
    assert np.abs(out[False].toarray() - H).max() <= 1e-12 * np.abs(H).max()


def test_nonfinite_chunk_is_refused(monkeypatch):
    R, L = fcc(4)
    R[7] = R[3]  # coincident atoms are refused as input; a NaN parameter reaches the blocks
    with pytest.raises(mdhess.InputError, match="same position"):
        mdhess.hessian(LJ, R, box=L, format="bsr")
    bad = mdhess.pair_potential(lambda r: jnp.sqrt(r - 1.2), cutoff=2.5)  # NaN below r = 1.2
    monkeypatch.setattr(_layouts, "HOST_BSR_MAX_PAIRS", 0)
    monkeypatch.setattr(_assembly, "chunk_pairs", lambda: 1000)
    with pytest.raises(mdhess.NonFiniteError, match="hessian: non-finite pair blocks"):
        mdhess.hessian(bad, fcc(4)[0], box=L, format="bsr")


_MEASURE = textwrap.dedent(
    """
    import gc, json, resource, sys
    import numpy as np
    import mdhess
    sys.path.insert(0, {here!r})
    from test_memory_plan import fcc
    pot = mdhess.lennard_jones(cutoff=2.5)
    R0, L0 = fcc(3)
    mdhess.hessian(pot, R0, box=L0, format="bsr")  # warm-up: imports, small compiles
    R, L = fcc({cells})
    gc.collect()

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(x.split()[1]) * 1024 for x in fh if x.startswith(key))

    try:  # the peak of this call alone: reset the high-water mark to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base, peak_of = status("VmRSS:"), lambda: status("VmHWM:")
    except OSError:  # elsewhere: the process's peak so far (a warm-up transient may hide some)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    M = mdhess.hessian(pot, R, box=L, format="bsr")
    peak = peak_of()
    n_pairs = (M.indices.shape[0] - len(R)) // 2
    plan = mdhess.estimate_memory(len(R), n_pairs, format="bsr")
    print(json.dumps(dict(used=peak - base, plan=plan.total_bytes, parts=plan.parts, n_pairs=n_pairs,
                          output=M.data.nbytes + M.indices.nbytes + M.indptr.nbytes)))
    """
)


def test_bsr_assembly_stays_within_its_plan():
    """N = 4000 (150,000 pairs: three chunks of the device path), in a fresh process: the peak
    RSS over the baseline is at most the plan. The plan is not vacuous: its output part is the
    matrix's bytes exactly, and it is within 2.5x of what was used (docs/scaling.md)."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, MDHESS_MEMORY_LIMIT="4G")
    res = subprocess.run(
        [sys.executable, "-c", _MEASURE.format(here=here, cells=10)], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["n_pairs"] > 2 * 2**16
    assert m["parts"]["output"] == m["output"]  # no image duplicates: 2p + N blocks exactly
    assert m["output"] < m["used"] <= m["plan"] <= 2.5 * m["used"], m


def test_refused_before_any_list_is_built(monkeypatch):
    R, L = fcc(6)  # 864 atoms, about 34,000 pairs: 2.6 MB of BSR output
    def no_list(*a, **k):
        raise AssertionError("a pair list was built")

    monkeypatch.setattr(_potential_module, "neighbor_pairs", no_list)
    # the pair list alone fits 1 MB (34,000 x 160 bytes = 5.4 MB does not: a smaller limit)...
    with pytest.raises(mdhess.MemoryPlanError, match=r"periodic pair list of N=864 .*atom-image pairs"):
        mdhess.hessian(LJ, R, box=L, format="bsr", memory_limit="1M")
    # ...and the whole request is planned from the estimated pair count, before the list:
    # 70 MB with the kernels' fixed part, refused at 40 MB with its parts named
    with pytest.raises(
        mdhess.MemoryPlanError,
        match=r"hessian\(format='bsr'.*N=864, pairs=3\d{4}\).*estimated from the density \(cell volume .*"
        r"before any list was built: about .*MiB \(output .*MiB, pair list .*, kernels and allocator 64\.00 MiB\) "
        r"exceeds the memory limit of 40\.00 MiB",
    ):
        mdhess.hessian(LJ, R, box=L, format="bsr", memory_limit="40M")
    # dense: 54 MB of output, refused at 12 MB; free space estimates from the bounding box
    with pytest.raises(mdhess.MemoryPlanError, match=r"format='dense'.*estimated from the density \(bounding-box volume"):
        mdhess.hessian(LJ, R, format="dense", memory_limit="12M")


def test_pair_estimate_follows_species_cutoffs_and_the_real_count():
    """The density estimate is within 15% of the real count for a crystal and a two-species
    glass (per-species-pair cutoffs: 0.83 of the count at the largest cutoff)."""
    import mdhess.io
    from mdhess.pair._planner import estimated_pairs

    R, L = fcc(6)
    real = (mdhess.hessian(LJ, R, box=L, format="bsr").indices.shape[0] - len(R)) // 2
    est = estimated_pairs(len(R), L**3, 2.5)
    assert abs(est / real - 1) < 0.15
    f = mdhess.io.read_trajectory(os.path.join(os.path.dirname(__file__), "..", "data", "ka500.h5"))[0]
    ka = mdhess.load_potential("kob-andersen")
    real = (mdhess.hessian(ka, f.positions, box=f.box, species=f.species, format="bsr").indices.shape[0] - 500) // 2
    V = float(np.linalg.det(f.box))
    est = estimated_pairs(500, V, ka.max_cutoff, species=f.species, pair_cutoffs=ka.pair_cutoffs)
    assert abs(est / real - 1) < 0.15
    assert estimated_pairs(500, V, ka.max_cutoff) > 1.1 * est  # the largest cutoff alone overcounts


def test_estimate_memory_bsr_figures():
    """The streamed BSR's plan: about 76 bytes per block of output (float64), 40 more per pair
    (list, entry places), and a fixed part; float32 halves the data."""
    n, p = 1_000_000, 40_000_000
    plan = mdhess.estimate_memory(n, p, format="bsr")
    m = 2 * p + n
    assert plan.parts["output"] == m * 76 + 4 * (n + 1)
    assert plan.parts["output"] < plan.total_bytes < 1.35 * plan.parts["output"]
    p32 = mdhess.estimate_memory(n, p, format="bsr", dtype="float32")
    assert p32.parts["output"] == m * 40 + 4 * (n + 1)

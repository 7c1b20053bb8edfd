"""Every ```python block of every docs page (docs/**/*.md) and of README.md runs; the potential pages
match the kernel registry; every link and anchor resolves and docs/index.md links every page.

The pages are discovered, not listed: a new page's blocks run without touching this file. Each block
is self-contained (its own imports) and runs on its own, in a fresh tmp_path as working directory
(some blocks write files: plots, .xyz, HDF5); a block that raises, fails an assert or exits non-zero
fails its test (id ``page:line``, the line of the block's first code line). Blocks in other languages
(bash, text, toml) are not run. How a page runs:

* default: in-process, ``exec`` in a fresh namespace (fast: JAX is imported once). Tracebacks point
  into the .md file at the right line.
* SUBPROCESS: a fresh ``python block.py``, as a user would run it; the script is padded so that its
  line numbers are the page's. For pages that import optional plugins with global state of their
  own (ASE, phonopy, jax-md) and must work without this test suite's JAX settings (tests/conftest.py
  turns on strict dtype promotion).
* SLOW: also marked ``pytest.mark.slow`` (run with ``-m slow``), each with its measured reason.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mdhess

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# every page, as a path relative to the repository root: docs/**/*.md, then README.md
PAGES = [str(p.relative_to(ROOT)) for p in sorted(DOCS.rglob("*.md"))] + ["README.md"]

SUBPROCESS = {
    "docs/ase.md": "imports ASE and mdhess.ase; run as a user would",
    "docs/phonopy.md": "imports phonopy and mdhess.phonopy; run as a user would",
    "docs/phono3py.md": "imports phono3py and mdhess.phono3py; run as a user would",
    "docs/jax-md.md": "imports jax-md and mdhess.plugins.jax_md; run as a user would",
}
# Measured with pytest --durations=0 on the 2-core machine, idle: all blocks of a page together.
# Every other page: autodiff.md 13 s, normal-modes.md 12 s, ase.md 7 s, api.md 6 s, each of the rest < 2 s.
SLOW = {
    "docs/jax-md.md": "61 s: 3 blocks compile jax-md FIRE / neighbour-list loops (28 s, 20 s, 14 s)",
    "docs/phonopy.md": "7 s (2 blocks); slow to keep the default plugin run short (test_phonopy covers it)",
    "docs/phono3py.md": "~6 s CPU (phono3py setup, compiles); slow like phonopy.md (test_phono3py covers it)",
}
# Pages that must show at least one runnable example (a new page may have none, like benchmarks.md).
CORE = [
    "README.md",
    "docs/index.md",
    "docs/api.md",
    "docs/pairs.md",
    "docs/autodiff.md",
    "docs/normal-modes.md",
    "docs/cli.md",
    "docs/file-formats.md",
    "docs/ase.md",
    "docs/phonopy.md",
    "docs/jax-md.md",
] + [p for p in PAGES if p.startswith("docs/potentials/")]
TIMEOUT = 300  # s, per subprocess block; a hang is a failure, not a stuck test run

FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
ANY_PY_FENCE = re.compile(r"^[ \t]*```[ \t]*py", re.M | re.I)  # what FENCE must not miss
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
HEADING = re.compile(r"^#+ (.*)$", re.M)


def _slugs(text):
    """GitHub-style anchors of a page's headings (code fences removed first)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in HEADING.findall(text)}


def _blocks():
    for page in PAGES:
        text = (ROOT / page).read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 2  # 1-based line of the block's first code line
            marks = [pytest.mark.slow] if page in SLOW else []
            yield pytest.param(page, line, m.group(1), id=f"{page}:{line}", marks=marks)


@pytest.mark.parametrize("page, line, code", list(_blocks()))
def test_python_block_runs(page, line, code, tmp_path, monkeypatch):
    source = "\n" * (line - 1) + code  # line numbers in tracebacks are the page's
    if page in SUBPROCESS:
        script = tmp_path / "block.py"
        script.write_text(source)
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
        t = time.perf_counter()
        args = [sys.executable, str(script)]
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, (
            f"{page}:{line} failed after {time.perf_counter() - t:.1f} s (block.py line = page line):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    else:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MPLBACKEND", "Agg")
        exec(compile(source, str(ROOT / page), "exec"), {"__name__": "__docs__"})


def test_every_python_fence_is_run():
    """FENCE sees every python block: none is indented or spelled ```py / ```python3 and so skipped."""
    for page in PAGES:
        text = (ROOT / page).read_text()
        n_run = len(FENCE.findall(text))
        assert len(ANY_PY_FENCE.findall(text)) == n_run, f"{page} has a python block that FENCE does not run"


def test_core_pages_have_an_example():
    for page in CORE:
        assert page in PAGES, f"{page} is gone: update CORE"
        assert FENCE.search((ROOT / page).read_text()), f"{page} has no ```python example"
    for table in (SUBPROCESS, SLOW):
        assert set(table) <= set(PAGES), f"{sorted(set(table) - set(PAGES))} listed but not found"


@pytest.mark.parametrize("name", sorted(mdhess.KERNELS))
def test_potential_page_matches_registry(name):
    """Each registered kernel has a page quoting its formula and reference verbatim."""
    info = mdhess.KERNELS[name]
    page = DOCS / "potentials" / f"{'coulomb' if name == 'coulomb_dsf' else name}.md"
    assert page.exists(), f"kernel {name!r} has no page {page.relative_to(ROOT)}"
    text = " ".join(page.read_text().split())
    assert info.formula in text, f"{page.name} does not quote the formula {info.formula!r}"
    for ref in info.reference.split("; "):
        assert ref in text, f"{page.name} does not cite {ref!r}"


def test_links_resolve_and_index_links_every_page():
    for page in PAGES:
        for target, anchor in LINK.findall((ROOT / page).read_text()):
            if "://" in target:
                continue
            path = (ROOT / page).parent / target if target else ROOT / page
            assert path.exists(), f"{page} links to missing {target}"
            if anchor:
                assert anchor in _slugs(path.read_text()), f"{page} links to missing anchor {target}#{anchor}"
    links = LINK.findall((DOCS / "index.md").read_text())
    index = {str((DOCS / t).resolve().relative_to(ROOT)) for t, _ in links if t and "://" not in t}
    missing = sorted(p for p in PAGES if p.startswith("docs/") and p != "docs/index.md" and p not in index)
    assert not missing, f"docs/index.md does not link {missing}"

"""Every ```python block of the core docs runs, and the potential pages match the kernel registry.

Each block is self-contained (its own imports) and is executed in a fresh namespace; a block that
raises or fails an assert fails its test. Blocks in other languages (bash, text) are not run.
"""

import re
from pathlib import Path

import pytest

import mdhess

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["index.md", "api.md", "pairs.md", "autodiff.md"] + sorted(
    str(p.relative_to(DOCS)) for p in (DOCS / "potentials").glob("*.md")
)
# Pages of docs/ written alongside these ones; links to them are allowed before they exist.
OTHER_PAGES = {
    "normal-modes.md",
    "cli.md",
    "file-formats.md",
    "ase.md",
    "phonopy.md",
    "jax-md.md",
    "benchmarks.md",
    "autodiff.md",
}
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
HEADING = re.compile(r"^#+ (.*)$", re.M)


def _slugs(text):
    """GitHub-style anchors of a page's headings (code fences removed first)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in HEADING.findall(text)}


def _blocks():
    for page in PAGES:
        text = (DOCS / page).read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 2
            yield pytest.param(page, line, m.group(1), id=f"{page}:{line}")


@pytest.mark.parametrize("page, line, code", list(_blocks()))
def test_python_block_runs(page, line, code):
    exec(compile(code, f"docs/{page}:{line}", "exec"), {"__name__": "__docs__"})


def test_every_page_has_an_example():
    for page in PAGES:
        assert FENCE.search((DOCS / page).read_text()), f"docs/{page} has no ```python example"


@pytest.mark.parametrize("name", sorted(mdhess.KERNELS))
def test_potential_page_matches_registry(name):
    """Each registered kernel has a page quoting its formula and reference verbatim."""
    info = mdhess.KERNELS[name]
    page = DOCS / "potentials" / f"{'coulomb' if name == 'coulomb_dsf' else name}.md"
    assert page.exists(), f"kernel {name!r} has no page {page.relative_to(DOCS.parent)}"
    text = " ".join(page.read_text().split())
    assert info.formula in text, f"{page.name} does not quote the formula {info.formula!r}"
    for ref in info.reference.split("; "):
        assert ref in text, f"{page.name} does not cite {ref!r}"


def test_links_resolve_and_index_links_every_page():
    for page in PAGES:
        for target, anchor in LINK.findall((DOCS / page).read_text()):
            if "://" in target:
                continue
            path = (DOCS / page).parent / target if target else DOCS / page
            rel = str(path.resolve().relative_to(DOCS.resolve()))
            assert path.exists() or rel in OTHER_PAGES, f"docs/{page} links to missing {target}"
            if anchor and path.exists():
                assert anchor in _slugs(path.read_text()), f"docs/{page} links to missing anchor {target}#{anchor}"
    index = {t for t, _ in LINK.findall((DOCS / "index.md").read_text())}
    wanted = OTHER_PAGES | {p for p in PAGES if p != "index.md"}
    wanted |= {str(p.relative_to(DOCS)) for p in DOCS.glob("*.md") if p.name != "index.md"}
    missing = sorted(wanted - index)
    assert not missing, f"docs/index.md does not link {missing}"


def test_readme_example_runs():
    text = (DOCS.parent / "README.md").read_text()
    blocks = FENCE.findall(text)
    assert blocks, "README.md has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "__docs__"})

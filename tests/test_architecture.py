"""The package's shape, checked from its source (docs/architecture.md states these rules):

- no module imports an underscore-prefixed name from another module (modules may be private,
  the names they share are the package's), nor reaches into one with ``module._name``;
- no import cycles inside mdhess/ (imports inside functions count too);
- layers import only downwards: foundation (errors, checks, device, units, version) <- pair
  <- modes <- io <- the package root (the public API) <- plugins <- the thin ``mdhess.ase`` /
  ``mdhess.phonopy`` re-exports <- cli (a front end over the public API);
- io knows no CLI flags; nothing but the CLI imports the CLI.

The source is parsed with ``ast``; nothing is imported.
"""

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "mdhess"
LAYERS = {"foundation": 0, "pair": 1, "modes": 2, "io": 3, "root": 4, "plugins": 5, "thin": 6, "cli": 7}
THIN = {"mdhess.ase", "mdhess.phonopy", "mdhess.phono3py"}  # user-facing re-exports of mdhess.plugins.*: root level


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package(module, MODULES[module]).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str):
    """(target module, imported name or None, line) for every mdhess import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mdhess"):
                    yield a.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not target.startswith("mdhess"):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:  # "from . import _planner": a module, not a name
                    yield sub, None, node.lineno
                else:
                    yield target, a.name, node.lineno


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_underscore_names_cross_modules():
    bad = []
    for module, path in MODULES.items():
        for target, name, line in _imports(module):
            if name is not None and _private(name) and target != module:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {name} from {target}")
        # module._name reaches into another module: find aliases bound to mdhess modules
        tree = ast.parse(path.read_text())
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, node)
                aliases |= {a.asname or a.name for a in node.names if f"{target}.{a.name}" in MODULES}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname for a in node.names if a.name.startswith("mdhess") and a.asname}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
            ):
                bad.append(f"{path.relative_to(PKG.parent)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not bad, "underscore names shared across modules:\n" + "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    g = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _, _ in _imports(m):
            if target in MODULES and target != m:
                g[m].add(target)
    return g


def test_no_import_cycles():
    g = _graph()
    # a package's __init__ that only re-exports is a face, not a room: an edge into it is an
    # edge into what it re-exports, which the graph holds already; skip faces in cycles
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(g[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _layer(module: str) -> str:
    parts = module.split(".")
    if module == "mdhess":
        return "root"
    if module in THIN:
        return "thin"
    if len(parts) == 2 and MODULES[module].name != "__init__.py":  # mdhess._errors, mdhess._units, ...
        return "foundation"
    return parts[1]


def test_layers_import_downwards():
    bad = []
    for m in MODULES:
        for target, _, line in _imports(m):
            if target in MODULES and LAYERS[_layer(target)] > LAYERS[_layer(m)]:
                bad.append(f"{m}:{line} ({_layer(m)}) imports {target} ({_layer(target)})")
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


def test_io_knows_no_cli_flags_and_only_the_cli_imports_the_cli():
    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
    bad = []
    for m, path in MODULES.items():
        if _layer(m) == "io":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and flag.search(node.value):
                    bad.append(f"{m}:{node.lineno} names a CLI flag: {flag.search(node.value).group()}")
        if _layer(m) != "cli":
            bad += [f"{m}:{line} imports {t}" for t, _, line in _imports(m) if t.startswith("mdhess.cli")]
    assert not bad, "\n".join(bad)


def test_expected_layout_exists():
    for name in ("mdhess.modes", "mdhess.plugins.ase", "mdhess.plugins.phonopy", "mdhess.plugins.jax_md",
                 "mdhess.ase", "mdhess.phonopy", "mdhess._version"):  # fmt: skip
        assert name in MODULES, f"{name} is missing"

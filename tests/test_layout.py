"""The package's shape: the import graph follows the layers, modules stay small, and the
repository stands alone (no private Keras APIs, no pointers to notes outside it)."""

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "keras_siglip"
ORACLE = ROOT / "keras_siglip_reference"

# Lower levels never import higher ones (also not inside functions).
LEVELS = {
    "keras_siglip.arguments": 0,  # checks of user arguments; imports only NumPy
    "keras_siglip.architectures": 0,
    "keras_siglip.registry": 0,
    "keras_siglip.backend": 0,
    "keras_siglip.preprocessing": 0,
    "keras_siglip.extras": 0,
    "keras_siglip.layers": 1,
    "keras_siglip.losses": 1,
    "keras_siglip.distributed": 1,
    "keras_siglip.models": 2,
    "keras_siglip.builders": 3,
    "keras_siglip.presets": 3,
    "keras_siglip.convert": 3,
    "keras_siglip.tasks": 4,
    "keras_siglip.testing": 4,
    "keras_siglip.check": 4,
    "keras_siglip.conformance": 4,
    "keras_siglip.processor": 4,  # tokenizer + image settings of one checkpoint
    "keras_siglip.pipeline": 4,  # a model with its processor: the tasks on raw files
    "keras_siglip_reference": 4,  # the oracle: only tasks-level code may use it
    "keras_siglip.apps": 5,
    "keras_siglip.cli": 5,
    "keras_siglip.__main__": 5,
    "keras_siglip": 5,  # the package's __init__: the public surface
}
MAX_LINES = 450
TABLES = {"keras_siglip/architectures.py", "keras_siglip/convert/names.py"}


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    files = sorted(PACKAGE.rglob("*.py")) + sorted(ORACLE.rglob("*.py"))
    return {_module_name(f): f for f in files}


def _scripts():
    """The benchmark and example scripts: held to the same size limit as the library."""
    return sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "examples").glob("*.py"))


MODULES = _modules()


def _level(module):
    best = None
    for prefix, level in LEVELS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, level)
    assert best is not None, f"{module} has no level in tests/test_layout.py's LEVELS"
    return best[1]


def _resolve(module, package, node):
    """The project modules a `from ... import ...` statement in `module` loads."""
    base = node.module or ""
    if node.level:
        anchor = package.split(".")
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    targets = []
    for alias in node.names:
        child = f"{base}.{alias.name}"
        targets.append(child if child in MODULES else base)
    return targets


def _imports(module, path):
    """Every project module `module` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, package, node))
    return {m for m in found if m in MODULES}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_no_import_goes_up_a_level():
    wrong = [
        f"{module} (level {_level(module)}) imports {target} (level {_level(target)})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if _level(target) > _level(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_import_graph_has_no_cycle():
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_oracle_shares_no_code_with_the_library():
    uses = {m: t for m, t in GRAPH.items() if m.startswith("keras_siglip_reference")}
    assert uses and not any(t.startswith("keras_siglip.") or t == "keras_siglip"
                            for targets in uses.values() for t in targets)


def test_modules_are_small():
    long = []
    for path in [*MODULES.values(), *_scripts()]:
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and rel not in TABLES:
            long.append(f"{rel}: {lines} lines")
    assert not long, "\n".join(long)


def _text_files():
    for folder in ("keras_siglip", "keras_siglip_reference", "tests", "examples", "benchmarks",
                   "docs", "scripts"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md", ".sh") and path.is_file():
                yield path
    yield ROOT / "README.md"


def test_no_private_keras_api_or_attribute_probing():
    pattern = re.compile(r"keras\.src|_flatten_layers|getattr\(.*is_naflex")
    hits = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, hits


def test_repository_stands_alone():
    # Docstrings and docs point into docs/, never to design notes kept outside the repository.
    pattern = re.compile(r"SPEC(\.md| ?§)|API\.md|\.\./shared|shared/(SPEC|API|STYLE)")
    this = Path(__file__).resolve()
    hits = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in _text_files()
        if path.resolve() != this
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_readme_layout_table_names_existing_paths():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| piece | where |"):].split("\n\n")[0]
    paths = re.findall(r"`((?:keras_siglip|keras_siglip_reference|docs|examples|benchmarks)"
                       r"[\w/.]*)`", table)
    assert paths
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, missing

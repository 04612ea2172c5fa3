"""The package's shape: imports go one way (no circles, nothing reaches up a layer).

Read from the source with `ast` (imports inside functions count too: a lazy import is still a
dependency), so a new module that breaks the layering fails here, not in a reviewer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sportsdet

PACKAGE = Path(sportsdet.__file__).parent

# Lower layers never import higher ones (same layer is fine, as long as there is no circle).
# Data flows files -> data -> preprocess -> models -> training/runtime -> evaluate/report -> cli.
LAYERS: list[tuple[str, ...]] = [
    ("sportsdet._version", "sportsdet.__main__", "sportsdet.errors"),
    ("sportsdet.imageio",),
    (
        "sportsdet.files",
        "sportsdet.fetch",  # writes its downloads with files' signal guard
        "sportsdet.near_copies",
        "sportsdet.preprocess",
        "sportsdet.metrics",
        "sportsdet.plots",
        "sportsdet.abstain",
    ),
    ("sportsdet.data",),
    ("sportsdet.bundle", "sportsdet.seen_photos", "sportsdet.models", "sportsdet.onnx_graph"),
    ("sportsdet.run_folder",),
    (
        "sportsdet.runtime",
        "sportsdet.predict",
        "sportsdet.export",
        "sportsdet.training",
        "sportsdet.abstain_bundle",
        "sportsdet.bundle_labels",
    ),
    ("sportsdet.evaluate", "sportsdet.report", "sportsdet.cluster", "sportsdet.serve"),
    ("sportsdet.train",),
    ("sportsdet.cli", "sportsdet"),
]
ENTRY_POINT = "sportsdet.__main__"  # imports the CLI on purpose
# The package root offers the public names (Predictor, load_bundle, ...), each imported from its
# own module on first use (importlib; its TYPE_CHECKING imports name them for type checkers): it
# sits on top, and no module of the package imports it (the version is in sportsdet._version).
PUBLIC_FACADE = "sportsdet"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            matches = module == name or (name != "sportsdet" and module.startswith(name + "."))
            if matches and len(name) > best:
                best, rank = len(name), index
    assert rank >= 0, f"{module} is in no layer of tests/test_architecture.py: add it where it belongs"
    return rank


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """sportsdet modules imported anywhere in a file, resolved to modules that exist."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # `from sportsdet import plots` imports the module sportsdet.plots; a name that is no
            # module (`from sportsdet.files import atomic_write`) comes from `base` itself.
            named = [f"{base}.{alias.name}" for alias in node.names]
            targets = [name for name in named if name in known]
            if len(targets) < len(named):
                targets.append(base)
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module and target.startswith("sportsdet"):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, name, known) for name, path in files.items()}


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for module, targets in import_graph().items():
        if module == ENTRY_POINT:
            continue
        for target in targets:
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} -> {target}")
    assert upward == []


def defined_names(path: Path) -> set[str]:
    """What a module makes itself (defs, classes, assignments, at any depth of its top-level
    if/try blocks) plus what it lists in __all__; a package __init__ offers what it imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    package_init = path.name == "__init__.py"
    for top in tree.body:
        for node in ast.walk(top) if isinstance(top, (ast.If, ast.Try)) else [top]:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and (top is not node or package_init):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
                names |= set(ast.literal_eval(node.value))
    return names


def test_names_are_imported_from_the_module_that_makes_them() -> None:
    # `from sportsdet.predict import resolve_bundle_dir` (inside serve's start-up) worked only while
    # predict happened to import it; when predict stopped needing it, the linter dropped the
    # import and the service never became ready. A module's own names, or its __all__, only.
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    defined = {module: defined_names(path) for module, path in files.items()}
    passed_through = []
    for path in files.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in files:
                passed_through += [
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name not in defined[node.module] and f"{node.module}.{alias.name}" not in files
                ]
    assert passed_through == []


def test_no_module_of_the_package_imports_its_root() -> None:
    # The root imports its public names' modules for type checkers; a module importing the root
    # (it did, for __version__) drew arrows back up and, at run time, a circle waiting to happen.
    importers = sorted(module for module, targets in import_graph().items() if PUBLIC_FACADE in targets)
    assert importers == []


def test_no_import_circles() -> None:
    graph = import_graph()
    # A package __init__ that re-exports its submodules is not a circle of its own making.
    edges = {
        module: {t for t in targets if not (t.startswith(module + ".") or module.startswith(t + "."))}
        for module, targets in graph.items()
    }
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert circles == []


def test_the_layering_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The checker itself must be able to fail: a data module importing the CLI is flagged.
    fake = tmp_path / "sportsdet" / "data"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from sportsdet.cli import app\n")
    found = imports_of(fake / "bad.py", "sportsdet.data.bad", {"sportsdet.cli", "sportsdet.data.bad"})
    assert found == {"sportsdet.cli"} and layer_of("sportsdet.cli") > layer_of("sportsdet.data.bad")


def test_training_functions_stay_short() -> None:
    """No function in training/ over ~80 lines unless its docstring says why."""
    long = []
    for path in (PACKAGE / "training").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if length > 80 and "long because" not in doc.lower():
                    long.append(f"{path.name}:{node.name} ({length} lines)")
    assert long == []

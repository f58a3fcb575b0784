"""The package's shape, read from its source: no module uses another module's underscore names, and
no two modules import each other (imports inside functions count)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for nnjpeg/ and models/ (installed as nnjpeg.models)."""
    out = {}
    for path in sorted((ROOT / "nnjpeg").glob("*.py")):
        out["nnjpeg" if path.stem == "__init__" else f"nnjpeg.{path.stem}"] = path
    for path in sorted((ROOT / "models").glob("*.py")):
        out["nnjpeg.models" if path.stem == "__init__" else f"nnjpeg.models.{path.stem}"] = path
    return out


MODULES = _modules()
# Modules whose own names start with an underscore are the package's shared private helpers
# (argument checks, console output, predictions): importing them is what they are for.
PRIVATE_MODULES = {m for m in MODULES if m.rsplit(".", 1)[-1].startswith("_")} | {"nnjpeg._codec"}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if MODULES[module].stem == "__init__" else module.rsplit(".", 1)[0]
    for _ in range(node.level - 1):
        package = package.rsplit(".", 1)[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(module: str) -> tuple[set[str], list[str]]:
    """The package modules `module` imports anywhere in it, and its uses of other modules' underscore
    names (as "line: text")."""
    tree = ast.parse(MODULES[module].read_text())
    imported, bad, aliases = set(), [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    imported.add(a.name)
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for a in node.names:
                as_module = f"{source}.{a.name}"
                if as_module in MODULES or as_module == "nnjpeg._codec":
                    imported.add(as_module)
                    aliases[a.asname or a.name] = as_module
                elif source in MODULES:
                    imported.add(source)
                    if a.name.startswith("_") and a.name != "__version__" and source != module:
                        bad.append(f"{node.lineno}: from {source} import {a.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and f"{aliases[node.value.id]}.{node.attr}" not in PRIVATE_MODULES
                and aliases[node.value.id] != module):
            bad.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return imported - {module}, bad


def test_no_module_uses_another_modules_underscore_names():
    found = {m: bad for m in MODULES if (bad := _imports(m)[1])}
    assert not found, f"underscore names used across modules: {found}"


def test_no_import_circles():
    graph = {m: {d for d in _imports(m)[0] if d in MODULES and d != "nnjpeg"} for m in MODULES}
    circles = []

    def visit(node, path):
        for nxt in sorted(graph[node]):
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif len(path) < len(graph):
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    shortest = sorted({tuple(c) for c in circles}, key=len)[:5]
    assert not shortest, f"import circles: {[' -> '.join(c) for c in shortest]}"

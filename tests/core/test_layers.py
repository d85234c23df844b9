"""The engines sit side by side in ``backends/`` and only lean on leaf modules below them:
nothing ``backends/`` imports from the package (at any depth, late imports included) imports
``backends`` again, so the import graph has no arrow running back up."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "core" / "realscale"


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["realscale", *parts])


def _imports(path: Path) -> set[str]:
    """The realscale modules a file imports (relative imports resolved), late ones too."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "realscale":
                continue
            if module != "realscale":  # the public facade; ``from .. import x`` means x
                found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names
                         if _module_file(f"{module}.{alias.name}") is not None)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names
                         if alias.name.split(".")[0] == "realscale")
    return {name for name in found if _module_file(name) is not None}


def _inside_backends(name: str) -> bool:
    return name == "realscale.backends" or name.startswith("realscale.backends.")


def test_nothing_backends_leans_on_imports_backends() -> None:
    backends = sorted((PACKAGE / "backends").glob("*.py"))
    assert {p.name for p in backends} >= {"__init__.py", "base.py", "torch.py", "ort.py"}
    seen: dict[str, str] = {}  # module -> the backends module that reached it
    todo = []
    for path in backends:
        for name in _imports(path):
            if not _inside_backends(name) and name not in seen:
                seen[name] = _module_name(path)
                todo.append(name)
    loops = []
    while todo:
        name = todo.pop()
        file = _module_file(name)
        assert file is not None
        for imported in _imports(file):
            if _inside_backends(imported):
                loops.append(f"{seen[name]} -> ... -> {name} -> {imported}")
            elif imported not in seen:
                seen[imported] = seen[name]
                todo.append(imported)
    assert not loops, "imports running back up into backends/: " + "; ".join(loops)
    assert "realscale.upscale" not in seen


def test_the_check_sees_late_and_relative_imports(tmp_path: Path) -> None:
    names = _imports(PACKAGE / "backends" / "__init__.py")
    assert "realscale.backends.torch" in names  # a late `from .torch import TorchEngine`
    assert "realscale.architectures" in names

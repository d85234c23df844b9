"""Architectures own their facts: one folder each, one registry list, and no code outside
``architectures/`` that tests an architecture's name or reaches into its folder."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO
from realscale import architectures, catalogue
from realscale.architectures import ARCHITECTURES

PACKAGE = REPO / "core" / "realscale"
FOLDERS = sorted(p.name for p in (PACKAGE / "architectures").iterdir()
                 if (p / "__init__.py").is_file())


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function, attribute)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for statement in body:
            if (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
                    and isinstance(statement.value.value, str)):
                found.add(id(statement.value))
    return found


def _leaks(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docs = _docstrings(tree)
    names = [arch.name for arch in ARCHITECTURES]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found += [f"{node.lineno}: the string {name!r}" for name in names
                      if name.lower() in node.value.lower()]
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if "architectures" in parts:
                after = parts[parts.index("architectures") + 1:]
                reached = after[:1] if after else [alias.name for alias in node.names]
                found += [f"{node.lineno}: imports architectures.{part}" for part in reached
                          if part in FOLDERS]
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: imports {alias.name}" for alias in node.names
                      if any(f"architectures.{folder}" in alias.name for folder in FOLDERS)]
        elif isinstance(node, ast.Attribute) and node.attr in FOLDERS:
            owner = node.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if owner_name == "architectures":
                found.append(f"{node.lineno}: reaches architectures.{node.attr}")
    return found


def test_the_registry_lists_every_architecture_folder() -> None:
    assert sorted(arch.name for arch in ARCHITECTURES) == sorted(
        __import__(f"realscale.architectures.{folder}", fromlist=["ARCH"]).ARCH.name
        for folder in FOLDERS)
    assert len(FOLDERS) == len(ARCHITECTURES)


def test_no_architecture_is_named_outside_its_folder() -> None:
    """Code outside architectures/ asks the Architecture record (``architectures.get``),
    never compares a name or imports an architecture's own modules."""
    leaks = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "architectures" in path.relative_to(PACKAGE).parts:
            continue
        found = _leaks(path)
        if found:
            leaks[str(path.relative_to(REPO))] = found
    assert not leaks, f"architecture knowledge outside architectures/: {leaks}"


def test_the_check_finds_a_leak(tmp_path: Path) -> None:
    """The check above is not blind: a name compared, or an architecture module imported."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""Mentions RRDBNet in a docstring, which is fine."""\n'
                   "from realscale.architectures.rrdbnet.strips import tail_strips\n"
                   "from realscale.architectures import compact\n"
                   "from realscale import architectures\n"
                   "def f(model):\n"
                   "    architectures.rrdbnet.ARCH.bf16_accurate\n"
                   "    return model.architecture == 'RRDBNet'\n")
    found = _leaks(bad)
    assert any("imports architectures.rrdbnet" in item for item in found), found
    assert any("imports architectures.compact" in item for item in found), found
    assert any("'RRDBNet'" in item for item in found), found
    assert any("reaches architectures.rrdbnet" in item for item in found), found
    assert not any(item.startswith("1:") for item in found), found


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda arch: arch.name)
def test_catalogue_entries_use_the_architectures_parameter_names(arch) -> None:
    entries = [e for e in catalogue.entries() if e.architecture == arch.name]
    assert entries, f"no catalogue model uses {arch.name}"
    for entry in entries:
        assert set(entry.params) == set(arch.param_names)
        assert architectures.get(entry.architecture) is arch


def test_an_unknown_architecture_name_is_refused() -> None:
    with pytest.raises(Exception, match="unknown architecture 'SPAN'"):
        architectures.get("SPAN")


def test_describe_needs_no_torch_and_names_what_it_tried() -> None:
    state = {"conv.weight": np.zeros((4, 3, 3, 3), np.float32)}
    with pytest.raises(Exception, match="tried RRDBNet, SRVGGNetCompact"):
        architectures.describe(state, "odd.pth")

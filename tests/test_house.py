"""The house rules that hold for the tests themselves and the module sizes."""

from __future__ import annotations

import ast

from tests.support.module_size import LIMIT, oversized
from tests.support.paths import ROOT


def _imported_modules(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_test_module_imports_another_test_module() -> None:
    """Shared helpers live in tests/support/, so a test module never imports a test or conftest."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module in _imported_modules(tree):
            last = module.rsplit(".", 1)[-1]
            if module.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_every_test_folder_mirrors_a_package() -> None:
    """Each folder of tests/ (but support/ and bench/) names a folder of the code."""
    exempt = {"support", "bench", "__pycache__"}
    for folder in sorted(p for p in (ROOT / "tests").rglob("*") if p.is_dir()):
        parts = folder.relative_to(ROOT / "tests").parts
        if exempt & set(parts):
            continue
        assert (ROOT.joinpath(*parts)).is_dir(), f"tests/{'/'.join(parts)} mirrors no package"


def test_no_hand_written_module_is_over_the_limit() -> None:
    """No module of gateway, adapters, policy or certs exceeds the house limit."""
    assert oversized() == [], f"modules over {LIMIT} lines"

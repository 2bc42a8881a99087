"""Migrations are schema only: none imports the services' code (or reads their settings)."""

import ast
from pathlib import Path

from shared.settings import REPO_ROOT

MIGRATIONS = REPO_ROOT / "shared" / "migrations"


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_migration_imports_a_service_or_the_playbook() -> None:
    files = sorted(MIGRATIONS.rglob("*.py"))
    assert len(files) > 10  # every version file is found
    offenders = {
        f"{path.relative_to(REPO_ROOT)}: {name}"
        for path in files
        for name in _imported(path)
        if name.split(".")[0] == "services" or name in ("shared.playbook", "shared.settings")
    }
    assert offenders == set()

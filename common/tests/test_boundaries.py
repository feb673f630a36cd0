"""`common` depends on no service: nothing in it imports a *_project package."""

import ast
from pathlib import Path

COMMON = Path(__file__).resolve().parent.parent
SERVICE_PACKAGES = {
    "gateway_project",
    "auth_project",
    "playlist_project",
    "analysis_project",
    "accounts",
    "proxy",
    "playlists",
    "analytics",
}


def test_common_imports_no_service_package():
    offenders = []
    for path in COMMON.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.name}: {name}" for name in names if name.split(".")[0] in SERVICE_PACKAGES
            ]
    assert offenders == []


def test_the_check_finds_an_offender(tmp_path):
    # The scan above must be able to fail: the same parse on a bad module finds it.
    tree = ast.parse("from playlist_project.settings import X\nimport analysis_project\n")
    found = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(found) == 2

"""Which environment variables the code reads, found by reading the code (AST), not a list.

A read is a call whose first argument is an upper-case string literal and whose function is
one of the settings helpers (``env``, ``env_str``, ``env_bool``, ``env_int``, ``env_float``,
``env_list``, ``secret``, ``required``), ``os.getenv`` or ``os.environ.get`` /
``os.environ.setdefault`` / ``os.environ.pop``, or a subscript / membership test on
``os.environ``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "auth", "playlist", "analysis")
HELPERS = {
    "env",
    "env_str",
    "env_bool",
    "env_int",
    "env_float",
    "env_list",
    "secret",
    "required",
    "getenv",
}
ENVIRON_METHODS = {"get", "setdefault", "pop"}
NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Read by the test tooling or the launcher only, never by a deployed service.
NOT_DEPLOYMENT = re.compile(r"^(TEST_.*|CI|DJANGO_SETTINGS_MODULE)$")


@dataclass(frozen=True)
class EnvRead:
    name: str  # the variable; for an f-string name, the name with each {...} as "*"
    path: Path
    line: int
    default: object  # the literal default (second argument) when there is one, else None
    pattern: re.Pattern[str] | None = None  # for an f-string name: the names it can take

    def matches(self, name: str) -> bool:
        return bool(self.pattern.fullmatch(name)) if self.pattern else name == self.name


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _literal(node: ast.AST | None) -> object:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def reads_in_source(source: str, path: Path) -> Iterator[EnvRead]:
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        name_node: ast.AST | None = None
        default: ast.AST | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ENVIRON_METHODS
                and _is_environ(func.value)
            ) or called in HELPERS:
                name_node = node.args[0]
                default = node.args[1] if len(node.args) > 1 else None
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            name_node = node.slice
        elif (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.In | ast.NotIn)
            and _is_environ(node.comparators[0])
        ):
            name_node = node.left
        if (
            isinstance(name_node, ast.Constant)
            and isinstance(name_node.value, str)
            and NAME.match(name_node.value)
        ):
            yield EnvRead(name_node.value, path, node.lineno, _literal(default))
        elif isinstance(name_node, ast.JoinedStr):
            # f"{upper}_SERVICE_URL": a family of names.
            parts = [str(v.value) if isinstance(v, ast.Constant) else "*" for v in name_node.values]
            shown = "".join(parts)
            if NAME.match(shown.replace("*", "X")):
                regex = "".join("[A-Z0-9_]+" if p == "*" else re.escape(p) for p in parts)
                yield EnvRead(shown, path, node.lineno, _literal(default), re.compile(regex))


def python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        parts = set(path.relative_to(REPO).parts)
        if parts & {"tests", "migrations", ".venv", "__pycache__"} or path.name == "conftest.py":
            continue
        yield path


def service_code(service: str) -> list[Path]:
    """Everything a service's processes run: common/ and its own project folder."""
    return [*python_files(REPO / "common"), *python_files(REPO / f"{service}_project")]


def reads(paths: Iterable[Path]) -> list[EnvRead]:
    found: list[EnvRead] = []
    for path in paths:
        found.extend(reads_in_source(path.read_text(), path))
    return found


def deployment_reads(paths: Iterable[Path]) -> list[EnvRead]:
    return [read for read in reads(paths) if not NOT_DEPLOYMENT.match(read.name)]


def reads_by_service() -> dict[str, list[EnvRead]]:
    return {service: deployment_reads(service_code(service)) for service in SERVICES}


def is_read(name: str, found: Iterable[EnvRead]) -> bool:
    return any(read.matches(name) for read in found)


def literal_defaults() -> dict[str, set[str]]:
    """Variable -> the literal defaults the code gives it (as strings), where it gives one."""
    defaults: dict[str, set[str]] = {}
    for service in SERVICES:
        for read in deployment_reads(service_code(service)):
            if read.pattern is not None:
                continue
            if isinstance(read.default, bool):
                value = "true" if read.default else "false"
            elif isinstance(read.default, int | float | str):
                value = str(read.default)
            else:
                continue
            defaults.setdefault(read.name, set()).add(value)
    return defaults

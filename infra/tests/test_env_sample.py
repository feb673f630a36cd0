"""infra/.env-sample and docs/configuration.md against the code: every variable read is
documented, nothing stale.

The set of variables comes from reading the services' code (envscan.py), so these tests stay
true as services add settings: a new env_int("X", ...) without a line in .env-sample, or without
a row in the table of docs/configuration.md, fails here.
"""

from __future__ import annotations

import re
from typing import Any

import envscan
from conftest import INFRA, REPO, env_sample_entries

import manage_all

CONFIGURATION = REPO / "docs" / "configuration.md"
_PLACEHOLDER = re.compile(r"<[A-Z]+>")
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolations(text: str) -> list[tuple[str, str | None, str | None]]:
    """(variable, operator, default or message) of every ${...} Compose substitutes."""
    return [(m.group(1), m.group(2), m.group(3)) for m in _INTERPOLATION.finditer(text)]


def launcher_reads() -> list[re.Pattern[str]]:
    """Variable names (or f-string families) the launcher (manage_all.py, devtools/) reads."""
    tree_text = "\n".join(
        path.read_text() for path in [REPO / "manage_all.py", *(REPO / "devtools").glob("*.py")]
    )
    found = [
        re.compile(re.escape(name))
        for name in re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", tree_text)
    ]
    for suffix in re.findall(r"\{\w+\.upper\(\)\}(_[A-Z0-9_]+)", tree_text):
        found.append(re.compile(r"[A-Z0-9_]+" + re.escape(suffix)))
    return found


def configuration_table(text: str) -> dict[str, re.Pattern[str]]:
    """Variables of the table in docs/configuration.md: every `NAME` in a row's first cell.

    A `<NAME>` in a variable stands for any upper-case part (`UPSTREAM_<NAME>_READ_TIMEOUT`).
    """
    table: dict[str, re.Pattern[str]] = {}
    for line in text.splitlines():
        cells = line.split("|")
        if not line.startswith("|") or len(cells) < 3:
            continue
        for name in re.findall(r"`([^`]+)`", cells[1]):
            if re.fullmatch(r"[A-Z][A-Z0-9_]*(?:<[A-Z]+>[A-Z0-9_]*)*", name):
                parts = _PLACEHOLDER.split(name)
                table[name] = re.compile("[A-Z0-9_]+".join(re.escape(p) for p in parts))
    return table


def in_table(read: envscan.EnvRead, table: dict[str, re.Pattern[str]]) -> bool:
    return any(
        read.matches(name) or pattern.fullmatch(read.name.replace("*", "X"))
        for name, pattern in table.items()
    )


def same_value(a: str, b: str) -> bool:
    if a.strip().lower() == b.strip().lower():
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def test_every_variable_a_service_reads_is_in_env_sample():
    sample = set(env_sample_entries())
    missing = []
    for service, reads in envscan.reads_by_service().items():
        for read in reads:
            if not any(read.matches(name) for name in sample):
                missing.append(
                    f"{read.name} ({read.path.relative_to(REPO)}:{read.line}, {service})"
                )
    assert not missing, "add to infra/.env-sample: " + ", ".join(sorted(set(missing)))


def test_every_variable_a_service_reads_is_in_the_configuration_table():
    table = configuration_table(CONFIGURATION.read_text())
    missing = sorted(
        {
            f"{read.name} ({read.path.relative_to(REPO)}:{read.line})"
            for reads in envscan.reads_by_service().values()
            for read in reads
            if not in_table(read, table)
        }
    )
    assert not missing, "add a row to the table of docs/configuration.md: " + ", ".join(missing)


def test_the_configuration_table_lists_env_sample_exactly():
    table = configuration_table(CONFIGURATION.read_text())
    sample = env_sample_entries()
    missing = [n for n in sample if not any(p.fullmatch(n) for p in table.values())]
    stale = [n for n, p in table.items() if not any(p.fullmatch(s) for s in sample)]
    assert not missing, f"in .env-sample, not in docs/configuration.md: {missing}"
    assert not stale, f"in docs/configuration.md, not in .env-sample: {stale}"


def test_configuration_table_parser():
    text = (
        "| variable | default |\n|---|---|\n"
        "| `A_B` / `C` | `D_E` |\n"
        "| `UPSTREAM_<NAME>_READ_TIMEOUT` | x |\n"
        "not a row `F`\n"
    )
    table = configuration_table(text)
    assert sorted(table) == ["A_B", "C", "UPSTREAM_<NAME>_READ_TIMEOUT"]
    assert table["UPSTREAM_<NAME>_READ_TIMEOUT"].fullmatch("UPSTREAM_PLAYLIST_READ_TIMEOUT")
    family = envscan.EnvRead("UPSTREAM_*_READ_TIMEOUT", CONFIGURATION, 1, None)
    assert in_table(family, table)
    assert not in_table(envscan.EnvRead("NOT_LISTED", CONFIGURATION, 1, None), table)


def test_every_variable_in_env_sample_is_used(compose_text):
    reads = [read for found in envscan.reads_by_service().values() for read in found]
    interpolated = {name for name, _, _ in interpolations(compose_text)}
    launcher = launcher_reads()
    stale = [
        name
        for name in env_sample_entries()
        if not envscan.is_read(name, reads)
        and name not in interpolated
        and not any(pattern.fullmatch(name) for pattern in launcher)
    ]
    assert not stale, f"read by no service, launcher or Compose: {stale}"


def test_every_variable_compose_substitutes_is_in_env_sample(compose_text):
    sample = env_sample_entries()
    missing = sorted({name for name, _, _ in interpolations(compose_text)} - set(sample))
    assert not missing, f"Compose substitutes these, .env-sample does not list them: {missing}"


def test_every_variable_compose_passes_to_a_service_is_read_by_it(services, app_services):
    reads = envscan.reads_by_service()
    sample = env_sample_entries()
    for name, service in app_services.items():
        spec: dict[str, Any] = services[name]
        command = spec.get("command") or []
        command_text = command if isinstance(command, str) else " ".join(command)
        for var in spec.get("environment") or {}:
            used_by_command = f"$${{{var}}}" in command_text or f"$${var}" in command_text
            assert envscan.is_read(var, reads[service]) or used_by_command, (
                f"Compose passes {var} to {name}, but neither {service}'s code nor the "
                "command reads it"
            )
            assert var in sample, f"{var} (passed to {name}) is missing from .env-sample"


def test_defaults_agree_with_the_code(compose_text):
    """A default written in Compose or .env-sample is the code's own default."""
    code = envscan.literal_defaults()
    wrong = []
    for name, operator, default in interpolations(compose_text):
        if (
            operator == ":-"
            and name in code
            and default is not None
            and not any(same_value(default, value) for value in code[name])
        ):
            wrong.append(f"compose {name}={default} (code: {sorted(code[name])})")
    for name, (value, _) in env_sample_entries().items():
        if name in code and value and not any(same_value(value, v) for v in code[name]):
            wrong.append(f".env-sample {name}={value} (code: {sorted(code[name])})")
    assert not wrong, "; ".join(wrong)


def test_every_variable_is_explained_by_a_comment():
    lines = (INFRA / ".env-sample").read_text().splitlines()
    explained = False
    unexplained = []
    for line in lines:
        text = line.strip()
        if not text:
            explained = False
        elif re.match(r"^#?\s*[A-Z][A-Z0-9_]*=", text):
            if not explained:
                unexplained.append(text)
        elif text.startswith("#") and not text.startswith("# ====="):
            explained = True
    assert not unexplained, f"no comment above: {unexplained}"


def test_env_sample_sets_nothing_and_holds_no_secret():
    # Copied to infra/.env it changes nothing for manage_all.py (which reads that file) until
    # a line is uncommented, and it carries no usable password.
    assert manage_all.read_env_file(INFRA / ".env-sample") == {}
    entries = env_sample_entries()
    for name in (
        "SECRET_KEY",
        "INTERNAL_SECRET",
        "POSTGRES_PASSWORD",
        "AUTH_DB_PASSWORD",
        "ANALYSIS_DB_PASSWORD",
        "MONGO_ROOT_PASSWORD",
        "MONGO_PLAYLIST_PASSWORD",
        "RABBITMQ_PASSWORD",
        "JWT_PRIVATE_KEY",
    ):
        assert entries[name] == ("", False), name


def test_env_file_is_git_and_docker_ignored(repo):
    assert "infra/.env" in (repo / ".gitignore").read_text().split()
    assert "infra/.env" in (repo / ".dockerignore").read_text().split()


# ------------------------------------------------------------------ the scanner itself


def test_envscan_finds_every_form_of_read(tmp_path):
    source = """
import os
from common.settings import env, env_int, secret
A = env("PLAIN")
B = env_int("WITH_DEFAULT", 42)
C = os.environ.get("FROM_ENVIRON", "x")
D = os.environ["SUBSCRIPT"]
E = "MEMBER" in os.environ
F = secret("A_SECRET", debug=False, dev_default="d")
G = env_str(f"{name}_SERVICE_URL", "http://x")
H = os.getenv("GETENV")
I = {"NOT_AN_ENV_READ": 1}
J = env("lower_case_is_not_a_variable")
"""
    path = tmp_path / "mod.py"
    reads = list(envscan.reads_in_source(source, path))
    names = {read.name for read in reads}
    assert names == {
        "PLAIN",
        "WITH_DEFAULT",
        "FROM_ENVIRON",
        "SUBSCRIPT",
        "MEMBER",
        "A_SECRET",
        "*_SERVICE_URL",
        "GETENV",
    }
    assert {r.name: r.default for r in reads}["WITH_DEFAULT"] == 42
    family = next(r for r in reads if r.name == "*_SERVICE_URL")
    assert family.matches("AUTH_SERVICE_URL") and not family.matches("AUTH_SERVICE_URLS")


def test_interpolation_parser():
    text = "A: ${ONE:?msg here} B: ${TWO:-2} C: ${THREE} D: $${NOT_ME} E: ${FOUR-x}"
    assert interpolations(text) == [
        ("ONE", ":?", "msg here"),
        ("TWO", ":-", "2"),
        ("THREE", None, None),
        ("FOUR", "-", "x"),
    ]

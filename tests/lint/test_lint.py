"""The linters as tests, so `make test` is one pytest session with one closing line.

ruff covers the daemon, the tests, the benchmarks, the Odoo harness and the addon (the addon's
own ``ruff.toml`` says which rules differ there and why); OCA's pylint-odoo checks the addon's
Odoo conventions (manifest, views, translations, SQL)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from odoo_harness.server import addon_modules

REPO = Path(__file__).resolve().parents[2]

# Off: the OCA-only author check, and the advice to merge inherits (the daemon API is split by
# concern on purpose). The addon's README.rst is generated from readme/*.md by OCA's
# oca-gen-addon-readme (maintainer-tools).
PYLINT_ODOO = [
    "--load-plugins=pylint_odoo",
    "--disable=all",
    "--enable=odoolint",
    "--valid-odoo-versions=18.0",
    "--disable=manifest-required-author,consider-merging-classes-inherited",
    "--score=n",
]


def run(*command: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("folder", ["daemon", "tests", "bench", "tools", "addon"])
def test_ruff_is_clean(folder: str) -> None:
    done = run("ruff", "check", "--no-cache", folder)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pylint_odoo_is_clean_on_the_addons() -> None:
    done = run("pylint", *PYLINT_ODOO, *addon_modules(), cwd=REPO / "addon")
    assert done.returncode == 0, done.stdout + done.stderr


# Names Python 3.11 added to the standard library: Odoo 18 supports Python 3.10, where
# importing them fails as the addon loads (ruff's target-version does not check names).
PY311_ONLY = {
    "datetime": {"UTC"},
    "enum": {"StrEnum", "ReprEnum", "verify", "member", "nonmember"},
    "typing": {"Self", "LiteralString", "Never", "assert_never", "reveal_type", "Required",
               "NotRequired"},
    "tomllib": {"*"},
    "wsgiref.types": {"*"},
}


def py311_only_names(tree: ast.AST) -> list[str]:
    """``module.name`` for each 3.11-only standard-library name ``tree`` imports or uses."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in PY311_ONLY:
            names = PY311_ONLY[node.module]
            found += [
                f"{node.module}.{a.name}" for a in node.names if "*" in names or a.name in names
            ]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if "*" in PY311_ONLY.get(a.name, ())]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.attr in PY311_ONLY.get(node.value.id, ())
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_addons_load_on_python_3_10_as_odoo_18_supports() -> None:
    offenders = {
        str(path.relative_to(REPO)): names
        for path in sorted((REPO / "addon").rglob("*.py"))
        if (names := py311_only_names(ast.parse(path.read_text(), str(path))))
    }
    assert not offenders, f"Python 3.11-only names in the addon: {offenders}"

"""The linters as tests, so `make test` is one pytest session with one closing line.

ruff covers the daemon, the tests, the benchmarks, the Odoo harness and the addon (the addon's
own ``ruff.toml`` says which rules differ there and why); OCA's pylint-odoo checks the addon's
Odoo conventions (manifest, views, translations, SQL)."""

from __future__ import annotations

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

"""Static checks of the Odoo addon that need no Odoo: the manifest and the files it names."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

ADDON = Path(__file__).resolve().parents[2] / "addon" / "crm_microsoft365"


def manifest() -> dict:
    return ast.literal_eval((ADDON / "__manifest__.py").read_text(encoding="utf-8"))


def test_manifest_is_a_valid_odoo_18_manifest():
    data = manifest()
    assert data["version"].startswith("18.0.")
    assert len(data["version"].split(".")) == 5
    assert {"contacts", "mail", "calendar"} <= set(data["depends"])
    assert data["license"] in {"LGPL-3", "AGPL-3", "OPL-1"}


def test_every_data_file_exists():
    for name in manifest()["data"]:
        assert (ADDON / name).is_file(), name


def test_oca_layout():
    for folder in (
        "models",
        "views",
        "security",
        "controllers",
        "wizards",
        "data",
        "tests",
        "readme",
    ):
        assert (ADDON / folder).is_dir(), folder
    assert (ADDON / "readme" / "DESCRIPTION.md").is_file()


def test_access_file_has_odoo_header():
    with (ADDON / "security" / "ir.model.access.csv").open(encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == [
        "id",
        "name",
        "model_id:id",
        "group_id:id",
        "perm_read",
        "perm_write",
        "perm_create",
        "perm_unlink",
    ]


def test_python_files_compile():
    for path in ADDON.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")

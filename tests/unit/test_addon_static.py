"""Static checks of the Odoo addon that need no Odoo: the manifest and the files it names."""

from __future__ import annotations

import ast
import csv
import xml.etree.ElementTree as ET
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


# --- views, models, access rows (parsed, no Odoo) -------------------------------------------


def _parse_xml(path: Path) -> ET.ElementTree:
    """The addon's own XML files (trusted: they are in this repository)."""
    return ET.parse(path)  # noqa: S314


# Fields of Odoo's own models that our views use (inherited res.partner / calendar.event /
# res.config.settings and the magic fields every model has).
STANDARD_FIELDS = {
    "res.partner": {"meeting_ids", "meeting_count", "name", "email", "is_company", "child_ids"},
    "calendar.event": {
        "name",
        "start",
        "stop",
        "user_id",
        "location",
        "partner_ids",
        "allday",
        "recurrency",
    },
    "res.config.settings": set(),
    "*": {"id", "display_name", "create_date", "create_uid", "write_date", "write_uid"},
}


def _model_files() -> list[Path]:
    return sorted([*(ADDON / "models").glob("*.py"), *(ADDON / "wizards").glob("*.py")])


def _models() -> dict[str, dict[str, str]]:
    """model name -> {field name: comodel or field type}, from `_name`/`_inherit` and
    `fields.X(...)` assignments in the models' classes (parsed with ast)."""
    found: dict[str, dict[str, str]] = {}
    for path in _model_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            name, fields = None, {}
            for stmt in node.body:
                if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
                    continue
                target = stmt.targets[0]
                if not isinstance(target, ast.Name):
                    continue
                if target.id == "_name" and isinstance(stmt.value, ast.Constant):
                    name = stmt.value.value
                elif target.id == "_inherit" and isinstance(stmt.value, ast.Constant):
                    name = name or stmt.value.value
                elif (
                    isinstance(stmt.value, ast.Call)
                    and isinstance(stmt.value.func, ast.Attribute)
                    and isinstance(stmt.value.func.value, ast.Name)
                    and stmt.value.func.value.id == "fields"
                ):
                    kind = stmt.value.func.attr
                    comodel = None
                    if stmt.value.args and isinstance(stmt.value.args[0], ast.Constant):
                        comodel = stmt.value.args[0].value
                    for kw in stmt.value.keywords:
                        if kw.arg == "comodel_name" and isinstance(kw.value, ast.Constant):
                            comodel = kw.value.value
                    related = kind in {"Many2one", "One2many", "Many2many"}
                    fields[target.id] = comodel if related and comodel else kind
            if name:
                found.setdefault(name, {}).update(fields)
    return found


def _known_fields(model: str, models: dict[str, dict[str, str]]) -> set[str]:
    return set(models.get(model, {})) | STANDARD_FIELDS.get(model, set()) | STANDARD_FIELDS["*"]


def _check_fields(element, model, models, problems, where):
    """Every <field name=...> under ``element`` exists on ``model``; sub-views (a field's
    inline <list>/<form>/<kanban>) are checked against the field's comodel."""
    for child in element:
        if child.tag == "field" and "name" in child.attrib:
            name = child.attrib["name"]
            if name not in _known_fields(model, models):
                problems.append(f"{where}: {model} has no field {name!r}")
            comodel = models.get(model, {}).get(name)
            if comodel is None and model in STANDARD_FIELDS:
                comodel = {"meeting_ids": "calendar.event"}.get(name)
            for sub in child:
                if sub.tag in {"list", "form", "kanban", "tree"}:
                    _check_fields(sub, comodel or "?", models, problems, where)
        else:
            _check_fields(child, model, models, problems, where)


def test_every_view_field_exists_on_its_model():
    models = _models()
    problems: list[str] = []
    views = [*(ADDON / "views").glob("*.xml"), *(ADDON / "wizards").glob("*.xml")]
    for path in sorted(views):
        root = _parse_xml(path).getroot()
        for record in root.iter("record"):
            if record.get("model") != "ir.ui.view":
                continue
            model_field = record.find("field[@name='model']")
            arch = record.find("field[@name='arch']")
            if model_field is None or arch is None:
                continue
            _check_fields(
                arch, model_field.text.strip(), models, problems, f"{path.name}#{record.get('id')}"
            )
    assert problems == []


def _security_xml_ids() -> set[str]:
    ids = set()
    for path in (ADDON / "security").glob("*.xml"):
        for record in _parse_xml(path).getroot().iter("record"):
            ids.add(record.get("id"))
    return ids


def test_access_rows_name_real_models_and_groups():
    models = {name for name in _models() if "." in name}
    model_ids = {f"model_{name.replace('.', '_')}" for name in models}
    groups = _security_xml_ids()
    seen_ids = set()
    with (ADDON / "security" / "ir.model.access.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        assert row["id"] not in seen_ids, row["id"]
        seen_ids.add(row["id"])
        assert row["model_id:id"] in model_ids, row
        group = row["group_id:id"]
        perms = [row[k] for k in ("perm_read", "perm_write", "perm_create", "perm_unlink")]
        if not group:
            # A row without a group applies to everyone: allowed only to grant nothing (a
            # model only the superuser touches, such as m365.oauth.callback).
            assert set(perms) == {"0"}, row
            continue
        assert group in groups or "." in group, row
        assert {row[k] for k in ("perm_read", "perm_write", "perm_create", "perm_unlink")} <= {
            "0",
            "1",
        }


def test_every_stored_model_has_access_rows():
    sources = "\n".join(p.read_text(encoding="utf-8") for p in _model_files())
    abstract = {"m365.daemon.api"}
    with (ADDON / "security" / "ir.model.access.csv").open(encoding="utf-8") as handle:
        covered = {row["model_id:id"] for row in csv.DictReader(handle)}
    for name in _models():
        if not name.startswith("m365.") or name in abstract:
            continue
        assert f'_name = "{name}"' in sources
        assert f"model_{name.replace('.', '_')}" in covered, name


def test_data_files_are_well_formed_and_security_loads_first():
    data = manifest()["data"]
    assert data[0].startswith("security/")
    for name in data:
        if name.endswith(".xml"):
            _parse_xml(ADDON / name)


def test_jwcrypto_is_declared():
    assert "jwcrypto" in manifest()["external_dependencies"]["python"]

"""What the addons' own Odoo test suites hold, read from their sources: the test classes and
the tours they start, so the pytest side knows what Odoo's log must show before it runs."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from odoo_harness.server import ADDONS, addon_modules


@dataclass(frozen=True)
class OdooTestClass:
    addon: str  # e.g. crm_microsoft365
    module: str  # e.g. test_leases
    name: str  # e.g. TestLeases
    tests: tuple[str, ...]
    tours: int  # start_tour calls in its test methods
    depends: frozenset[str]  # the addon's manifest dependencies

    @property
    def key(self) -> str:
        """How `odoo_harness.testlog` names the class."""
        return f"{self.addon}.{self.name}"

    def __str__(self) -> str:
        return f"{self.addon}.{self.module}.{self.name}"


def odoo_test_classes() -> list[OdooTestClass]:
    """Every addon's test classes that hold tests of their own (Odoo runs those)."""
    found = []
    for addon in addon_modules():
        manifest = ast.literal_eval((ADDONS / addon / "__manifest__.py").read_text("utf-8"))
        depends = frozenset(manifest.get("depends", ()))
        for path in sorted((ADDONS / addon / "tests").glob("test_*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in tree.body:
                if not isinstance(node, ast.ClassDef):
                    continue
                methods = [
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("test")
                ]
                if not methods:
                    continue
                tours = sum(
                    1
                    for method in methods
                    for call in ast.walk(method)
                    if isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "start_tour"
                )
                names = tuple(m.name for m in methods)
                found.append(OdooTestClass(addon, path.stem, node.name, names, tours, depends))
    return found


def installable_in(classes: list[OdooTestClass], modules: tuple[str, ...]) -> list[OdooTestClass]:
    """The classes whose addon a database with ``modules`` gets: each dependency is one of
    those modules or one of our addons (a glue module needing the CRM app is not in a bare
    database)."""
    available = set(modules) | set(addon_modules())
    return [c for c in classes if c.depends <= available]

"""The shared table of address and domain cases (also read by the addon's Odoo tests, which
check the addon's mirror of these rules): the daemon's one copy of each rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m365sync.sync import addresses

CASES = json.loads(
    (
        Path(__file__).resolve().parents[2] / "addon/crm_microsoft365/tests/address_cases.json"
    ).read_text(encoding="utf-8")
)
RULES = [name for name in CASES if not name.startswith("_")]


@pytest.mark.parametrize(
    ("rule", "raw", "expected"),
    [(rule, raw, expected) for rule in RULES for raw, expected in CASES[rule]],
)
def test_the_shared_case(rule: str, raw: str | None, expected: str | None) -> None:
    assert getattr(addresses, rule)(raw) == expected

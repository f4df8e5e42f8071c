import json
from pathlib import Path

from odoo.tests import TransactionCase, tagged

from ..models.m365_tools import email_domain, normalize_domain, normalize_email, website_domain

# The daemon's rule names (m365sync.sync.addresses) -> the addon's copy of each rule.
RULES = {
    "address_key": normalize_email,
    "normalise_domain": normalize_domain,
    "domain_of_email": lambda raw: email_domain(normalize_email(raw)),
    "domain_of_website": website_domain,
}


@tagged("post_install", "-at_install")
class TestAddressRules(TransactionCase):
    """The addon's copy of the address and domain rules gives what the daemon's gives, case
    by case, from the table both test suites read."""

    def test_the_shared_cases(self):
        cases = json.loads(Path(__file__).with_name("address_cases.json").read_text("utf-8"))
        self.assertEqual(set(RULES), {name for name in cases if not name.startswith("_")})
        for rule, function in RULES.items():
            for raw, expected in cases[rule]:
                with self.subTest(rule=rule, raw=raw):
                    self.assertEqual(function(raw), expected)

    def test_a_company_website_gives_the_work_domain_the_daemon_matches(self):
        company = self.env["res.partner"].create(
            {"name": "Bücher", "is_company": True, "website": "https://www.xn--bcher-kva.example"}
        )
        self.assertEqual(company.m365_website_domain, "bücher.example")

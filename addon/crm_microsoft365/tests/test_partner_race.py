from odoo.service.model import MAX_TRIES_ON_CONCURRENCY_FAILURE, PG_CONCURRENCY_EXCEPTIONS_TO_RETRY
from odoo.tests import tagged
from odoo.tests.common import TransactionCase
from odoo.tools import mute_logger
from psycopg2.errors import LockNotAvailable

from odoo import SUPERUSER_ID, api

from .common import unique


@tagged("post_install", "-at_install")
class TestPartnerCreationRace(TransactionCase):
    """Two accounts' cycles meet the same new sender at once (a customer writes to sales@ and
    to a salesperson): two ``create_partners`` RPCs, each in its own REPEATABLE READ
    transaction, neither seeing the partner the other makes. Reproduced here with two real
    cursors and the retry of Odoo's RPC layer (`_create`), so the partners must be
    committed: each test works on its own cursors and deletes what it committed."""

    def setUp(self):
        super().setUp()
        self.daemon_id = self.env.ref("crm_microsoft365.user_m365_daemon").id
        self.domain = f"{unique('fabrikam')}.example"
        self.email = f"dana.birkby@{self.domain}"
        self.drafts = [
            {"name": "Dana Birkby", "email": self.email, "company_domain": self.domain, "is_company": False},
            {"name": "Fabrikam", "is_company": True, "company_domain": self.domain},
        ]
        self.addCleanup(self._delete_committed)

    def _delete_committed(self):
        with self.registry.cursor() as cr0:
            env = api.Environment(cr0, SUPERUSER_ID, {"active_test": False})
            env["res.partner"].search(self._made_domain()).unlink()
            env["m365.partner.claim"].search(
                [("key", "in", [f"email:{self.email}", f"domain:{self.domain}"])]
            ).unlink()
            cr0.commit()  # safe: removes only the partners and claims this test committed

    def _made_domain(self):
        return ["|", ("m365_email_domain", "=", self.domain), ("m365_website_domain", "=", self.domain)]

    def _committed(self):
        """What a fresh transaction sees: (people, companies) this test's drafts made."""
        with self.registry.cursor() as cr:
            partners = api.Environment(cr, SUPERUSER_ID, {"active_test": False})["res.partner"].search(
                self._made_domain()
            )
            return (
                sorted(partners.filtered(lambda p: not p.is_company).ids),
                sorted(partners.filtered("is_company").ids),
            )

    def _api(self, cr):
        return api.Environment(cr, self.daemon_id, {})["m365.daemon.api"]

    def _create(self, daemon_api, retried=None):
        """The RPC as Odoo's RPC layer runs it (``odoo.service.model.retrying``): an error
        it retries rolls the transaction back and runs the call again on a fresh snapshot.
        ``retried`` collects those errors. (Not ``retrying`` itself, which is made for a
        served request: from a test's worker thread it hung after catching the error.)"""
        retried = [] if retried is None else retried
        for _ in range(MAX_TRIES_ON_CONCURRENCY_FAILURE):
            try:
                with mute_logger("odoo.sql_db"):  # the failure Odoo retries logs "bad query"
                    return daemon_api.create_partners({"drafts": self.drafts})
            except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY as error:
                retried.append(error)
                daemon_api.env.cr.rollback()
                daemon_api.env.reset()
        raise AssertionError(f"still failing after {len(retried)} tries: {retried[-1]}")

    def test_a_partner_committed_after_the_snapshot_is_found_not_made_again(self):
        with self.registry.cursor() as cr1, self.registry.cursor() as cr2:
            api1, api2 = self._api(cr1), self._api(cr2)
            # The second cycle's RPC has begun (its snapshot is taken) when the first commits.
            self.assertEqual(api2.find_partners_by_emails({"emails": [self.email]}), {})
            first = api1.create_partners({"drafts": self.drafts})
            cr1.commit()  # safe: the test's own partners, deleted in cleanup
            retried = []
            second = self._create(api2, retried)
            cr2.commit()  # safe: as above (it found the partners, made nothing)
        # The claim turned the second transaction's create into an error Odoo runs again.
        self.assertEqual(len(retried), 1, retried)
        self.assertEqual([p["id"] for p in second], [p["id"] for p in first])
        self.assertEqual(self._committed(), ([first[0]["id"]], [first[1]["id"]]))
        self.assertEqual(first[0]["parent_id"], first[1]["id"])

    def test_a_partner_being_created_is_waited_for_then_found(self):
        """Both transactions in flight: the second waits for the first's claim (here until a
        lock timeout, which Odoo also retries, so one thread can play both cycles), then, the
        first committed, runs again and finds its partners."""
        with self.registry.cursor() as cr1, self.registry.cursor() as cr2:
            api1, api2 = self._api(cr1), self._api(cr2)
            self.assertEqual(api2.find_partners_by_emails({"emails": [self.email]}), {})
            first = api1.create_partners({"drafts": self.drafts})
            cr2.execute("SET LOCAL lock_timeout = '300ms'")
            with self.assertRaises(LockNotAvailable), mute_logger("odoo.sql_db"):
                api2.create_partners({"drafts": self.drafts})
            cr2.rollback()
            cr1.commit()  # safe: the test's own partners, deleted in cleanup
            second = self._create(api2)
            cr2.commit()  # safe: as above (it found the partners, made nothing)
        self.assertEqual([p["id"] for p in second], [p["id"] for p in first])
        self.assertEqual(self._committed(), ([first[0]["id"]], [first[1]["id"]]))

    def test_claims_older_than_a_day_are_vacuumed(self):
        Claim = self.env["m365.partner.claim"]
        old, new = f"email:{unique('old')}@example.com", f"email:{unique('new')}@example.com"
        Claim._claim([new, old, new])
        self.env.cr.execute(
            "UPDATE m365_partner_claim SET write_date = write_date - interval '25 hours' WHERE key = %s",
            (old,),
        )
        Claim.invalidate_model()
        Claim._gc_old_claims()
        self.assertEqual(Claim.search([("key", "in", [old, new])]).mapped("key"), [new])

    def test_a_deleted_partner_is_made_again(self):
        """Claims never stand for a partner: once a person deletes it (or merges it away), the
        next mail from that sender creates it again."""
        with self.registry.cursor() as cr0:
            first = self._create(self._api(cr0))
            cr0.commit()  # safe: the test's own partners, deleted in cleanup
            env = api.Environment(cr0, SUPERUSER_ID, {})
            env["res.partner"].browse([p["id"] for p in first]).unlink()
            cr0.commit()  # safe: a person deletes the test's own partners
            again = self._create(self._api(cr0))
            cr0.commit()  # safe: the test's own partners, deleted in cleanup
        self.assertTrue(set(p["id"] for p in again).isdisjoint(p["id"] for p in first))
        self.assertEqual(self._committed(), ([again[0]["id"]], [again[1]["id"]]))
        self.assertEqual(again[0]["parent_id"], again[1]["id"])


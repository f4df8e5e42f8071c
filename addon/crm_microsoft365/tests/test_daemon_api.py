import psycopg2
from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import (
    ARCHIVE,
    INBOX,
    SENT,
    M365Case,
    unique,
    wire_message,
    wire_page,
    wire_spec,
    wire_stored,
)


@tagged("post_install", "-at_install")
class TestDaemonApi(M365Case):
    # --- accounts ---------------------------------------------------------------------------

    def test_upsert_account_creates_then_updates_by_identity(self):
        spec = wire_spec(
            owner="m365-test-a",
            privacy="subject",
            auto_create="sent",
            own_domains=["Contoso.example", "www.contoso.test"],
        )
        first = self.api.upsert_account({"spec": spec})
        self.assertEqual(first["status"], "connected")
        self.assertEqual(first["owner"], "m365-test-a")
        self.assertEqual(first["own_domains"], ["contoso.example", "contoso.test"])
        self.assertEqual(first["sealed_token_cache"], spec["sealed_token_cache"])
        self.assertIs(first["status_until"], False)  # None crosses XML-RPC as False
        renamed = dict(spec, address=f"{unique('r')}@contoso.example", display_name="Renamed")
        renamed["sealed_token_cache"] = None  # keeps the stored token
        second = self.api.upsert_account({"spec": renamed})
        self.assertEqual(second["id"], first["id"])
        self.assertEqual(second["display_name"], "Renamed")
        self.assertEqual(second["sealed_token_cache"], spec["sealed_token_cache"])
        self.assertEqual(self.api.get_account({"account_id": first["id"]}), second)
        ids = [a["id"] for a in self.api.list_accounts({})]
        self.assertEqual(ids, sorted(ids))

    def test_without_identity_the_address_identifies_case_insensitively(self):
        address = f"{unique('Mixed')}@Contoso.example"
        first = self.api.upsert_account({"spec": {"address": address}})
        second = self.api.upsert_account({"spec": {"address": address.upper()}})
        self.assertEqual(first["id"], second["id"])

    def test_status_until_and_last_sync(self):
        account = self.account()
        self.api.set_account_status(
            {
                "account_id": account["id"],
                "status": "throttled",
                "detail": "slow down",
                "until": "2025-03-01T09:05:00+00:00",
                "synced_at": None,
            }
        )
        got = self.api.get_account({"account_id": account["id"]})
        self.assertEqual(
            (got["status"], got["status_detail"], got["status_until"]),
            ("throttled", "slow down", "2025-03-01T09:05:00+00:00"),
        )
        self.api.set_account_status(
            {"account_id": account["id"], "status": "active", "synced_at": "2025-03-01T09:00:00Z"}
        )
        got = self.api.get_account({"account_id": account["id"]})
        self.assertEqual(got["last_sync_at"], "2025-03-01T09:00:00+00:00")
        self.assertIs(got["status_until"], False)

    def test_unknown_account(self):
        missing = 2**31 - 7
        for method, payload in (
            ("get_account", {"account_id": missing}),
            ("set_account_status", {"account_id": missing, "status": "active"}),
            ("store_token_cache", {"account_id": missing, "sealed_token_cache": "x"}),
            ("store_mail_page", {"page": wire_page(missing, upserts=[wire_message("g")])}),
        ):
            with self.assertRaisesRegex(UserError, "^M365:UnknownAccount: "):
                getattr(self.api, method)(payload)

    # --- pages ------------------------------------------------------------------------------

    def test_store_page_then_replay_creates_nothing(self):
        account = self.account()
        page = wire_page(
            account["id"],
            upserts=[wire_message(unique("g")), wire_message(unique("g"))],
            link="https://g/next?1",
            kind="next",
        )
        result = self.api.store_mail_page({"page": page, "lease": None})
        self.assertEqual(result, {"created": 2, "updated": 0, "linked": 2, "removed": 0})
        self.assertEqual(
            self.api.get_cursor({"account_id": account["id"], "folder_id": INBOX}),
            {"link": "https://g/next?1", "kind": "next", "full_round": False},
        )
        self.assertIs(self.api.get_cursor({"account_id": account["id"], "folder_id": SENT}), False)
        before = self.api.count_messages({"account_id": None})
        again = self.api.store_mail_page({"page": page})
        self.assertEqual(again, {"created": 0, "updated": 0, "linked": 0, "removed": 0})
        self.assertEqual(self.api.count_messages({"account_id": None}), before)
        self.assertEqual(self.api.count_messages({"account_id": account["id"]}), 2)

    def test_same_internet_message_id_in_two_accounts_is_stored_once(self):
        first, second = self.account(), self.account()
        imid = f"<{unique()}@example.com>"
        self.api.store_mail_page({"page": wire_page(first["id"], upserts=[wire_message(unique("g"), imid)])})
        result = self.api.store_mail_page(
            {"page": wire_page(second["id"], upserts=[wire_message(unique("g"), imid)])}
        )
        self.assertEqual(result["created"], 0)
        self.assertEqual(
            self.env["m365.mail.message"].search_count([("internet_message_id", "=", imid)]), 1
        )
        self.assertEqual(self.api.count_messages({"account_id": second["id"]}), 1)

    def test_same_message_in_two_folders_and_removal_per_folder(self):
        account = self.account()
        imid = f"<{unique()}@example.com>"
        in_inbox = wire_message(unique("g"), imid)
        in_sent = wire_message(unique("g"), imid, folder=SENT)
        self.api.store_mail_page({"page": wire_page(account["id"], INBOX, [in_inbox])})
        result = self.api.store_mail_page({"page": wire_page(account["id"], SENT, [in_sent])})
        self.assertEqual((result["created"], result["linked"]), (0, 1))
        # A removal from Inbox does not touch the Sent copy.
        result = self.api.store_mail_page(
            {"page": wire_page(account["id"], INBOX, [], [in_inbox["graph_id"], in_sent["graph_id"]])}
        )
        self.assertEqual(result["removed"], 1)
        self.assertEqual(
            self.api.message_ids_for_account({"account_id": account["id"]}),
            {in_sent["graph_id"]: imid},
        )
        result = self.api.store_mail_page(
            {"page": wire_page(account["id"], SENT, [], [in_sent["graph_id"]])}
        )
        self.assertEqual(result["removed"], 1)
        self.assertFalse(
            self.env["m365.mail.message"].search([("internet_message_id", "=", imid)])
        )
        self.assertFalse(self.env["m365.mail.thread"].search([("conversation_id", "=", "conv-1")]))

    def test_update_moves_and_unsynced_folder(self):
        account = self.account()
        msg = wire_message(unique("g"))
        self.api.store_mail_page({"page": wire_page(account["id"], INBOX, [msg])})
        changed = dict(msg, subject="Changed", change_key="ck2")
        result = self.api.store_mail_page({"page": wire_page(account["id"], INBOX, [changed])})
        self.assertEqual((result["created"], result["updated"]), (0, 1))
        archived = wire_page(account["id"], INBOX)
        archived["moved"] = {msg["graph_id"]: ARCHIVE}
        result = self.api.store_mail_page({"page": archived})
        self.assertEqual((result["removed"], result["linked"]), (0, 1))
        self.api.store_mail_page({"page": wire_page(account["id"], INBOX, [], [msg["graph_id"]])})
        self.assertEqual(self.api.count_messages({"account_id": account["id"]}), 1)

    def test_a_failing_page_leaves_nothing(self):
        account = self.account()
        good = wire_stored(wire_message(unique("g")))
        bad = wire_stored(wire_message(unique("g")))
        bad["participants"][0]["partner_id"] = 2**31 - 7  # no such partner
        with self.assertRaises(psycopg2.IntegrityError), self.cr.savepoint(), mute_logger("odoo.sql_db"):
            self.api.store_mail_page({"page": wire_page(account["id"], INBOX, [good, bad])})
        self.assertEqual(self.api.count_messages({"account_id": account["id"]}), 0)
        self.assertIs(self.api.get_cursor({"account_id": account["id"], "folder_id": INBOX}), False)

    def test_page_queries_are_bounded(self):
        """One call per page, and the number of queries does not grow with the page."""
        account = self.account()

        def queries_for(size):
            page = wire_page(account["id"], INBOX, [wire_message(unique("g")) for _ in range(size)])
            self.env.flush_all()
            self.env.invalidate_all()
            before = self.cr.sql_log_count
            self.api.store_mail_page({"page": page})
            self.env.flush_all()
            return self.cr.sql_log_count - before

        small, large = queries_for(5), queries_for(50)
        self.assertLess(large, small + 60, (small, large))

    def test_skips_are_counted_once_per_page(self):
        account = self.account()
        page = wire_page(account["id"])
        page["skipped"] = {"internal": 2}
        self.api.store_mail_page({"page": page})
        self.api.store_mail_page({"page": page})  # a replay
        folder = self.env["m365.account.folder"].search([("account_id", "=", account["id"])])
        self.assertEqual(folder.skipped, '{"internal": 2}')
        self.api.reset_folder({"account_id": account["id"], "folder_id": INBOX})
        self.assertIs(self.api.get_cursor({"account_id": account["id"], "folder_id": INBOX}), False)

    def _round_page(self, account, upserts=(), *, starts=False, completes=False, removed=(), skipped=None):
        page = wire_page(
            account["id"], INBOX, upserts, removed, kind="delta" if completes else "next"
        )
        page["cursor"]["full_round"] = not completes
        page["round"] = {
            "starts": starts,
            "since": None,
            "listed_ids": [m["graph_id"] for m in upserts],
            "completes": completes,
        }
        page["skipped"] = skipped or {}
        return page

    def test_a_full_round_settles_what_it_did_not_list_on_its_last_page(self):
        """Issue #14: after a 410 the fresh round marks what it lists; the links it did not
        list are named by unlisted_in_round and go only with the round's last page."""
        account = self.account()
        a, b, c = (wire_message(unique("g")) for _ in range(3))
        self.api.store_mail_page({"page": wire_page(account["id"], INBOX, [a, b, c])})
        self.api.reset_folder({"account_id": account["id"], "folder_id": INBOX})
        self.api.store_mail_page({"page": self._round_page(account, [a], starts=True, skipped={"internal": 1})})
        where = {"account_id": account["id"], "folder_id": INBOX}
        self.assertTrue(self.api.get_cursor(where)["full_round"])
        self.assertEqual(self.api.unlisted_in_round(where), sorted([b["graph_id"], c["graph_id"]]))
        self.assertEqual(self.api.count_messages({"account_id": account["id"]}), 3)
        last = self._round_page(account, [b], completes=True, removed=[c["graph_id"]], skipped={"internal": 1})
        self.assertEqual(self.api.store_mail_page({"page": last})["removed"], 1)
        self.assertEqual(
            set(self.api.message_ids_for_account({"account_id": account["id"]})),
            {a["graph_id"], b["graph_id"]},
        )
        self.assertEqual(self.api.unlisted_in_round(where), [])
        self.assertFalse(self.api.get_cursor(where)["full_round"])
        # Another full round counts its own skips: one round's tally, never two.
        self.api.reset_folder(where)
        self.api.store_mail_page({"page": self._round_page(account, [a, b], starts=True, skipped={"internal": 2})})
        folder = self.env["m365.account.folder"].search([("account_id", "=", account["id"])])
        self.assertEqual(folder.skipped, '{"internal": 2}')

    # --- partners, threads, counts ----------------------------------------------------------

    def test_partner_lookups(self):
        local = unique("élodie.")
        elodie = self.partner("Élodie", f"{local.title()}@Exemple.FR")
        domain = f"{unique('acme')}.example"
        acme = self.partner("Acme", f"info@{domain}", is_company=True)
        site = f"{unique('globex')}.example"
        globex = self.partner("Globex", is_company=True, website=f"https://www.{site}/about")
        found = self.api.find_partners_by_emails({"emails": [f"{local.upper()}@exemple.fr", "x@y.z"]})
        self.assertEqual(list(found), [f"{local}@exemple.fr"])
        self.assertEqual(found[f"{local}@exemple.fr"]["id"], elodie.id)
        self.assertIs(found[f"{local}@exemple.fr"]["parent_id"], False)
        companies = self.api.find_companies_by_domains({"domains": [domain, site, "none.example"]})
        self.assertEqual({k: v["id"] for k, v in companies.items()}, {domain: acme.id, site: globex.id})
        got = self.api.get_partners({"partner_ids": [elodie.id, 2**31 - 7]})
        self.assertEqual(list(got), [str(elodie.id)])

    def test_create_partners_in_order_with_parents_and_idempotent(self):
        domain = f"{unique('globex')}.example"
        drafts = [
            {"name": "Hank", "email": f"hank@{domain}", "company_domain": domain, "is_company": False},
            {"name": "Globex", "is_company": True, "company_domain": domain},
        ]
        hank, globex = self.api.create_partners({"drafts": drafts})
        self.assertEqual(hank["parent_id"], globex["id"])
        again = self.api.create_partners({"drafts": drafts})
        self.assertEqual([p["id"] for p in again], [hank["id"], globex["id"]])

    def test_threads_for_partner_and_counts(self):
        account = self.account()
        domain = f"{unique('acme')}.example"
        company = self.partner("Acme", f"info@{domain}", is_company=True)
        ann = self.partner("Ann", f"ann@{domain}", parent_id=company.id)
        known = {p.email.casefold(): p for p in (company, ann)}
        c1, c2 = unique("conv-"), unique("conv-")
        mails = [
            wire_message(
                unique("g"), conversation=c1, subject="Offer", to=(ann.email,), at="2025-03-01T09:00:00+00:00"
            ),
            wire_message(
                unique("g"),
                conversation=c1,
                subject="RE: Offer",
                sender=ann.email,
                to=("me@contoso.example",),
                at="2025-03-01T11:00:00+00:00",
            ),
            wire_message(
                unique("g"), conversation=c2, subject="Invoice", to=(company.email,), at="2025-03-01T10:00:00+00:00"
            ),
        ]
        self.api.store_mail_page({"page": wire_page(account["id"], INBOX, [wire_stored(m, known) for m in mails])})
        threads = self.api.threads_for_partner({"partner_id": ann.id})
        self.assertEqual([(t["subject"], t["message_count"]) for t in threads], [("Offer", 2)])
        self.assertEqual(threads[0]["last_at"], "2025-03-01T11:00:00+00:00")
        self.assertIn(ann.id, threads[0]["partner_ids"])
        self.assertIn("me@contoso.example", threads[0]["participants"])
        company_threads = self.api.threads_for_partner({"partner_id": company.id})
        self.assertEqual([t["subject"] for t in company_threads], ["Offer", "Invoice"])
        counts = {p["id"]: (t, m) for p, t, m in self.api.mail_counts_by_partner({})}
        self.assertEqual(counts[ann.id], (1, 2))
        self.assertEqual(counts[company.id], (2, 3))
        # The partner form's smart button and tab agree (company shows its contacts' mail).
        self.assertEqual(company.m365_message_count, 3)
        self.assertEqual(company.m365_thread_ids.mapped("subject"), ["Offer", "Invoice"])

    def test_sync_runs(self):
        account = self.account()
        self.assertIs(self.api.last_sync_run({"account_id": account["id"]}), False)
        run = {
            "account_id": account["id"],
            "started_at": "2025-03-01T09:05:00+00:00",
            "finished_at": "2025-03-01T09:06:00+00:00",
            "pages": 1,
            "imported": 1,
            "updated": 2,
            "removed": 3,
            "skipped": {"internal": 4},
            "error": "Microsoft Graph failed for now",
            "calendar": {"new": 2, "pushed": 1},
            "outbox": {"sent": 1, "pending": 2},
            "parts": {"mail": False, "calendar": "Microsoft Graph failed for now"},
            "graph_requests": 17,
            "token_requests": 1,
        }
        self.api.record_sync_run({"run": run})
        self.api.record_sync_run({"run": dict(run, started_at="2025-03-01T09:00:00+00:00", error=None)})
        self.assertEqual(self.api.last_sync_run({"account_id": account["id"]}), run)
        self.assertEqual(self.env["m365.sync.run"].search([("account_id", "=", account["id"])], limit=1).failed_parts,
                         "calendar")

    # --- connecting from the CRM --------------------------------------------------------------

    def test_daemon_info_and_connect_requests(self):
        jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "k1"}]}
        self.api.publish_daemon_info(
            {"info": {"jwks": jwks, "kid": "k1", "version": "0.1", "client_secret_expires": "2099-01-01"}}
        )
        settings = self.env["res.config.settings"].create({})
        self.assertTrue(settings.m365_daemon_running)
        self.assertEqual(settings.m365_daemon_kid, "k1")
        self.assertFalse(settings.m365_client_secret_warning)
        with self.assertRaisesRegex(UserError, "^M365:Conflict: "):
            self.api.publish_daemon_info({"info": {"jwks": {"keys": [{"d": "private!", "kid": "k"}]}}})
        request = self.env["m365.connect.request"].create({"user_id": self.user_a.id, "sealed": "eyJ.x"})
        pending = self.api.pending_connects({})
        self.assertIn({"id": request.id, "owner": "m365-test-a", "sealed": "eyJ.x"}, pending)
        account = self.account(owner="m365-test-a")
        finished = self.api.finish_connect({"connect_id": request.id, "account_id": account["id"], "error": None})
        self.assertIs(finished, True)
        self.assertEqual((request.state, request.account_id.id, request.sealed), ("done", account["id"], False))
        self.assertNotIn(request.id, [p["id"] for p in self.api.pending_connects({})])

    # --- who may call -------------------------------------------------------------------------

    def test_only_the_daemon_group_may_call(self):
        api_a = self.env["m365.daemon.api"].with_user(self.user_a)
        for method, payload in (
            ("list_accounts", {}),
            ("lease_accounts", {"holder": "x", "limit": 1, "ttl_seconds": 60}),
            ("store_mail_page", {"page": wire_page(1)}),
            ("pending_connects", {}),
        ):
            with self.assertRaises(AccessError):
                getattr(api_a, method)(payload)

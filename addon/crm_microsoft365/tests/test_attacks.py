"""Issue #13: the attacks a hostile user, sender or network peer tried, one test each, named
after the attack. The daemon-side cases live in the repository's tests/security/."""

import json
import xmlrpc.client
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from jwcrypto import jwk
from odoo.exceptions import AccessError
from odoo.tests import Form, HttpCase, new_test_user, tagged

from ..controllers.main import REDIRECT_PATH, SESSION_KEY
from ..controllers.push import MAX_BODY
from ..models.m365_outbox import split_addresses, wire_addresses
from ..models.res_config_settings import NOTIFICATION_PATH
from .common import M365Case, microsoft_answers, unique, wire_message, wire_page, wire_stored

IBAN_DE = "<p>Please pay to IBAN DE00 1234 5678</p>"
IBAN_GB = "<p>Our bank changed: new IBAN GB99 9999 9999</p>"


@tagged("post_install", "-at_install")
class TestAttacksOnStoredMail(M365Case):
    def setUp(self):
        super().setUp()
        self.Message = self.env["m365.mail.message"]

    def store(self, account, msg, participants=None):
        stored = wire_stored(msg)
        if participants is not None:
            stored["participants"] = participants
        return self.api.store_mail_page({"page": wire_page(account["id"], upserts=[stored])})

    # point 3 -----------------------------------------------------------------------------------

    def test_a_forged_message_id_from_another_sender_does_not_overwrite_the_stored_mail(self):
        first, second = self.account(), self.account()
        imid = f"<{unique()}@supplier.example>"
        self.store(first, wire_message(unique("g"), imid, sender="billing@supplier.example", body=IBAN_DE))
        self.store(second, wire_message(unique("g"), imid, sender="mallory@evil.example", body=IBAN_GB))
        messages = self.Message.search([("internet_message_id", "=", imid)], order="id")
        self.assertEqual(len(messages), 2)
        self.assertIn("DE00", messages[0].body_html)
        self.assertEqual(messages[0].from_address, "billing@supplier.example")
        self.assertIn("GB99", messages[1].body_html)

    def test_a_reused_message_id_with_other_content_from_the_same_sender_is_another_message(self):
        first, second = self.account(), self.account()
        imid = f"<{unique()}@supplier.example>"
        self.store(first, wire_message(unique("g"), imid, sender="billing@supplier.example", body=IBAN_DE))
        self.store(second, wire_message(unique("g"), imid, sender="billing@supplier.example", body=IBAN_GB))
        messages = self.Message.search([("internet_message_id", "=", imid)], order="id")
        self.assertEqual(len(messages), 2)
        self.assertIn("DE00", messages[0].body_html)

    # point 4 -----------------------------------------------------------------------------------

    def test_a_metadata_mailbox_does_not_blank_mail_another_mailbox_shared(self):
        shared, private = self.account(), self.account(privacy="metadata")
        imid = f"<{unique()}@client.example>"
        full = wire_message(unique("g"), imid, subject="Contract renewal", body=IBAN_DE)
        full["fingerprint"] = "fp-" + imid
        blank = wire_message(unique("g"), imid, subject=None, body=None)
        blank["fingerprint"] = "fp-" + imid
        self.store(shared, full)
        self.store(private, blank)
        message = self.Message.search([("internet_message_id", "=", imid)])
        self.assertEqual(len(message), 1)
        self.assertEqual(message.subject, "Contract renewal")
        self.assertIn("DE00", message.body_html)
        self.assertEqual(len(message.link_ids), 2)

    def test_mail_a_metadata_mailbox_stored_first_is_filled_by_an_everything_mailbox(self):
        shared, private = self.account(), self.account(privacy="subject")
        imid = f"<{unique()}@client.example>"
        subject_only = wire_message(unique("g"), imid, subject="Contract renewal", body=None)
        subject_only["fingerprint"] = "fp-" + imid
        full = wire_message(unique("g"), imid, subject="Contract renewal", body=IBAN_DE)
        full["fingerprint"] = "fp-" + imid
        self.store(private, subject_only)
        self.store(shared, full)
        self.store(private, dict(subject_only, change_key="ck2"))
        message = self.Message.search([("internet_message_id", "=", imid)])
        self.assertEqual(len(message), 1)
        self.assertIn("DE00", message.body_html)

    # point 7: what the daemon sends is sanitised here too ---------------------------------------

    def test_an_inline_css_overlay_from_the_daemon_is_removed(self):
        account = self.account()
        overlay = (
            '<div style="position:fixed;top:0;left:0;width:100%;height:100%;z-index:9999">'
            "Your session expired, log in again</div><p style=\"color:red\">ok</p>"
        )
        self.store(account, wire_message(unique("g"), body=overlay))
        message = self.Message.search([("link_ids.account_id", "=", account["id"])])
        self.assertNotIn("position", message.body_html)
        self.assertNotIn("z-index", message.body_html)
        self.assertIn("color", message.body_html)

    def test_remote_images_and_tracking_pixels_do_not_load_until_asked(self):
        account = self.account(owner=self.user_a.login)
        body = (
            '<p>Hi</p><img src="https://tracker.example/pixel.gif?u=42" width="1" height="1">'
            '<img src="data:image/png;base64,iVBORw0KGgo=">'
        )
        self.store(account, wire_message(unique("g"), body=body))
        message = self.Message.with_user(self.user_a).search(
            [("link_ids.account_id", "=", account["id"])]
        )
        self.assertIn("tracker.example", message.body_html)  # kept, never rendered as such
        self.assertNotIn(' src="https://tracker.example', message.body_display)
        self.assertIn('src="data:image/png', message.body_display)
        self.assertTrue(message.has_remote_images)
        message.action_show_images()
        self.assertIn(' src="https://tracker.example', message.body_display)

    # point 7: records other users must not see or take ------------------------------------------

    def test_mail_links_do_not_show_other_users_mailbox_addresses(self):
        account = self.account(owner=self.user_a.login)
        self.store(account, wire_message(unique("g")))
        Link = self.env["m365.mail.message.link"]
        self.assertEqual(Link.with_user(self.user_a).search_count([("account_id", "=", account["id"])]), 1)
        self.assertEqual(Link.with_user(self.user_b).search_count([("account_id", "=", account["id"])]), 0)

    def test_an_owner_cannot_hand_an_account_to_another_user(self):
        account = self.env["m365.account"].browse(self.account(owner=self.user_a.login)["id"])
        with self.assertRaises(AccessError):
            account.with_user(self.user_a).write({"user_id": self.user_b.id})
        self.assertEqual(account.user_id, self.user_a)

    # point 1: the daemon API never serves a mailbox whose owner is not an internal user ---------

    def test_a_portal_users_account_is_never_synced(self):
        portal = new_test_user(self.env, login=unique("portal"), groups="base.group_portal")
        account = self.env["m365.account"].browse(self.account(owner=portal.login)["id"])
        self.assertEqual(account.user_id, portal)
        self.api.lease_accounts({"holder": "h1", "limit": 1000, "ttl_seconds": 60})
        self.assertFalse(account.sudo().lease_holder)
        self.assertEqual(account.status, "failed")
        self.assertIn("not an internal user", account.status_detail)
        self.assertFalse(self.api.get_account({"account_id": account.id})["owner_internal"])

    def test_a_portal_users_connect_request_is_never_redeemed(self):
        portal = new_test_user(self.env, login=unique("portal"), groups="base.group_portal")
        request = self.env["m365.connect.request"].sudo().create(
            {"user_id": portal.id, "sealed": "eyJ.sealed"}
        )
        pending = {p["id"]: p for p in self.api.pending_connects({})}
        self.assertNotIn(request.id, pending)
        self.assertFalse(self.api.claim_connect({"connect_id": request.id, "holder": "h1"}))
        self.assertEqual(request.state, "failed")
        self.assertFalse(request.sealed)

    # point 2: reply recipients -------------------------------------------------------------

    def _reply_to_a_message_from(self, name):
        self.user_a.groups_id += self.env.ref("base.group_partner_manager")
        account = self.account(owner=self.user_a.login)
        msg = wire_message(unique("g"), sender="xena@client.example", conversation=unique("conv"))
        msg["sender"]["name"] = name
        self.store(account, msg)
        thread = self.env["m365.mail.thread"].search([("conversation_id", "=", msg["conversation_id"])])
        # To holds the contact found or made from the stored (name, address) pair; email_to is
        # the text the outbox gets from it.
        form = Form(
            self.env["m365.compose.wizard"]
            .with_user(self.user_a)
            .with_context(default_thread_id=thread.id)
        )
        self.assertEqual(form.recipient_ids[:].email, "xena@client.example")
        return form.email_to

    def test_a_sender_name_cannot_inject_a_reply_recipient(self):
        email_to = self._reply_to_a_message_from('Xena" <attacker@evil.example>, "Xena')
        self.assertEqual(
            [a["address"] for a in wire_addresses(email_to)], ["xena@client.example"]
        )
        self.assertEqual(len(split_addresses(email_to)), 1)

    def test_a_sender_name_with_line_breaks_does_not_reach_email_to(self):
        email_to = self._reply_to_a_message_from("Xena\r\nBcc: attacker@evil.example")
        self.assertNotIn("\r", email_to)
        self.assertNotIn("\n", email_to)
        self.assertEqual(
            [a["address"] for a in wire_addresses(email_to)], ["xena@client.example"]
        )

    # point 9: the administrator's privacy setting -------------------------------------------

    def test_restricted_mail_is_read_by_owner_salesperson_and_managers_only(self):
        salesperson = new_test_user(self.env, login=unique("sales"), groups="base.group_user")
        manager = new_test_user(
            self.env, login=unique("mgr"), groups="base.group_user,crm_microsoft365.group_m365_manager"
        )
        client = self.partner("Client", f"{unique('c')}@client.example", user_id=salesperson.id)
        account = self.account(owner=self.user_a.login)
        msg = wire_message(unique("g"), sender=client.email)
        self.api.store_mail_page(
            {"page": wire_page(account["id"], upserts=[wire_stored(msg, {client.email.casefold(): client})])}
        )
        imid = msg["internet_message_id"]

        def readers():
            return {
                user.login
                for user in (self.user_a, self.user_b, salesperson, manager)
                if self.Message.with_user(user).search_count([("internet_message_id", "=", imid)])
            }

        everyone = {self.user_a.login, self.user_b.login, salesperson.login, manager.login}
        self.assertEqual(readers(), everyone)  # the default: every internal user
        settings = self.env["res.config.settings"].create({"m365_mail_restricted": True})
        settings.execute()
        self.env.invalidate_all()
        self.assertEqual(readers(), everyone - {self.user_b.login})
        self.env["res.config.settings"].create({"m365_mail_restricted": False}).execute()
        self.env.invalidate_all()
        self.assertEqual(readers(), everyone)


    def test_restricted_mail_keeps_its_people_and_attachments_from_other_users(self):
        """With mail restricted, a user who cannot read a message cannot read its
        participants' addresses nor its attachments' names either, by searching those models
        directly."""
        salesperson = new_test_user(self.env, login=unique("sales"), groups="base.group_user")
        client = self.partner("Client", f"{unique('c')}@client.example", user_id=salesperson.id)
        account = self.account(owner=self.user_a.login)
        msg = wire_message(unique("g"), sender=client.email, to=(f"{unique('secret')}@partner.example",))
        msg["has_attachments"] = True
        msg["attachments"] = [{"name": "merger-terms.pdf", "size": 1234, "content_type": "application/pdf"}]
        self.api.store_mail_page(
            {"page": wire_page(account["id"], upserts=[wire_stored(msg, {client.email.casefold(): client})])}
        )
        message = self.Message.search([("internet_message_id", "=", msg["internet_message_id"])])
        self.assertTrue(message.participant_ids and message.attachment_ids)

        def seen(user):
            people = self.env["m365.mail.participant"].with_user(user).search([("message_id", "=", message.id)])
            files = self.env["m365.mail.attachment"].with_user(user).search([("message_id", "=", message.id)])
            return len(people), len(files)

        everything = (len(message.participant_ids), len(message.attachment_ids))
        self.assertEqual(seen(self.user_b), everything)  # the default: every internal user
        self.env["res.config.settings"].create({"m365_mail_restricted": True}).execute()
        self.env.invalidate_all()
        self.assertEqual(seen(self.user_b), (0, 0))
        with self.assertRaises(AccessError):
            message.participant_ids[0].with_user(self.user_b).read(["address"])
        with self.assertRaises(AccessError):
            message.attachment_ids[0].with_user(self.user_b).read(["name"])
        for reader in (self.user_a, salesperson):  # the mailbox's owner, the salesperson
            self.assertEqual(seen(reader), everything)


@tagged("post_install", "-at_install")
class TestAttacksWithTheDaemonsKey(HttpCase):
    """The daemon's API key (its technical user ``m365sync``) reaches the daemon API and
    nothing else: not users, contacts, chatter, calendars, the CRM, nor the synced mail."""

    def test_the_daemons_key_cannot_read_users_contacts_chatter_or_the_crm(self):
        daemon = self.env.ref("crm_microsoft365.user_m365_daemon")
        self.assertFalse(daemon._is_internal())
        self.assertEqual(daemon.groups_id, self.env.ref("crm_microsoft365.group_m365_daemon"))
        key = self.env["res.users.apikeys"].with_user(daemon).sudo()._generate("rpc", "attack test", None)
        db = self.env.cr.dbname
        uid = self.xmlrpc_common.authenticate(db, daemon.login, key, {})
        self.assertEqual(uid, daemon.id)
        accounts = self.xmlrpc_object.execute_kw(db, uid, key, "m365.daemon.api", "list_accounts", [{}])
        self.assertIsInstance(accounts, list)  # the key works, for the daemon API
        models = ["res.users", "res.partner", "mail.message", "calendar.event", "m365.mail.message", "m365.account"]
        if "crm.lead" in self.env:
            models.append("crm.lead")
        for model in models:
            with self.subTest(model=model), self.assertRaises(xmlrpc.client.Fault) as refused:
                self.xmlrpc_object.execute_kw(db, uid, key, model, "search_read", [[]], {"fields": ["id"], "limit": 1})
            self.assertIn("You are not allowed to access", refused.exception.faultString)


@tagged("post_install", "-at_install")
class TestAttacksOverHttp(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, login="m365-atk", groups="base.group_user")
        cls.portal = new_test_user(cls.env, login="m365-atk-portal", groups="base.group_portal")
        daemon = new_test_user(
            cls.env, login="m365-atk-daemon", groups="base.group_user,crm_microsoft365.group_m365_daemon"
        )
        key = jwk.JWK.generate(kty="EC", crv="P-256", kid="k1", alg="ECDH-ES+A256KW", use="enc")
        cls.env["m365.daemon.api"].with_user(daemon).publish_daemon_info(
            {"info": {"jwks": {"keys": [key.export_public(as_dict=True)]}, "kid": "k1", "version": "t"}}
        )
        params = cls.env["ir.config_parameter"].sudo()
        params.set_param("crm_microsoft365.client_id", "11111111-2222-3333-4444-555555555555")
        params.set_param("crm_microsoft365.authority_host", "https://login.example")

    def start(self):
        response = self.url_open("/m365/connect", allow_redirects=False)
        self.assertIn(response.status_code, (302, 303), response.text)
        return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}

    def callback(self, **fields):
        return microsoft_answers(self, **fields)

    def requests_of(self, user):
        return self.env["m365.connect.request"].sudo().search([("user_id", "=", user.id)])

    def session_values(self):
        from odoo.http import root

        return dict(root.session_store.get(self.session.sid))

    # point 1 -------------------------------------------------------------------------------

    def test_a_portal_user_cannot_connect_a_mailbox(self):
        self.authenticate("m365-atk-portal", "m365-atk-portal")
        page = self.url_open("/m365/connect", allow_redirects=False)
        self.assertEqual(page.status_code, 403)
        self.assertNotIn("Location", page.headers)
        self.assertIn("internal users", page.text)
        self.assertNotIn(SESSION_KEY, self.session_values())
        answer = self.callback(state="x", code="stolen-or-own-code")
        self.assertEqual(answer.status_code, 403)
        self.assertFalse(self.requests_of(self.portal))

    # point 6 -------------------------------------------------------------------------------

    def test_a_non_ascii_state_on_the_callback_is_a_400(self):
        self.authenticate("m365-atk", "m365-atk")
        self.start()
        answer = self.callback(state="é☃", code="x")
        self.assertEqual(answer.status_code, 400)
        self.assertNotIn("Traceback", answer.text)

    def test_deeply_nested_json_to_the_notification_endpoint_is_a_400(self):
        body = '{"value": ' + "[" * 200000 + "]" * 200000 + "}"
        answer = self.url_open(
            NOTIFICATION_PATH, data=body, headers={"Content-Type": "application/json"}
        )
        self.assertEqual(answer.status_code, 400)
        self.assertNotIn("Traceback", answer.text)

    # point 5 -------------------------------------------------------------------------------

    def test_a_chunked_body_past_the_limit_is_refused_with_413(self):
        def chunks():
            yield b'{"value": []'
            sent = 0
            block = b" " * 65536
            while sent <= MAX_BODY + len(block):
                yield block
                sent += len(block)
            yield b"}"

        answer = self.url_open(
            NOTIFICATION_PATH, data=chunks(), headers={"Content-Type": "application/json"}
        )
        self.assertEqual(answer.status_code, 413)

    def test_a_declared_length_past_the_limit_is_refused_with_413(self):
        body = b'{"value": []' + b" " * (MAX_BODY + 10) + b"}"
        answer = self.url_open(
            NOTIFICATION_PATH, data=body, headers={"Content-Type": "application/json"}
        )
        self.assertEqual(answer.status_code, 413)

    # point 7: the OAuth callback --------------------------------------------------------------

    def test_a_junk_callback_does_not_cancel_the_pending_sign_in(self):
        self.authenticate("m365-atk", "m365-atk")
        query = self.start()
        junk = self.callback(state="junk", code="attacker-code")
        self.assertEqual(junk.status_code, 400)
        ok = self.callback(state=query["state"], code="the-code")
        self.assertEqual(ok.status_code, 200, ok.text)
        self.assertEqual(len(self.requests_of(self.user)), 1)

    def test_the_pkce_verifier_is_not_kept_in_the_session(self):
        self.authenticate("m365-atk", "m365-atk")
        self.start()
        pending = self.session_values().get(SESSION_KEY)
        self.assertTrue(pending)
        self.assertNotIn("verifier", json.dumps(pending))

    def test_the_authorization_code_is_in_no_url(self):
        """Microsoft posts the code (form_post): the POST keeps it server-side, sealed, and
        sends the browser on with the state only, so no access log, proxy log or browser
        history holds a code; the POST sets no cookie, so the user stays signed in."""
        self.authenticate("m365-atk", "m365-atk")
        query = self.start()
        self.assertEqual(query["response_mode"], "form_post")
        code = "M.C507_BAY.2.U.secret-authorization-code"
        posted = requests.post(
            self.base_url() + REDIRECT_PATH,
            data={"code": code, "state": query["state"]},
            allow_redirects=False,
            timeout=12,
        )
        self.assertEqual(posted.status_code, 303)
        self.assertNotIn("Set-Cookie", posted.headers)
        location = posted.headers["Location"]
        self.assertEqual(parse_qs(urlsplit(location).query), {"state": [query["state"]]})
        waiting = self.env["m365.oauth.callback"].sudo().search([])
        self.assertEqual(len(waiting), 1)
        self.assertNotIn(code, json.dumps(waiting.read()[0], default=str))  # sealed, not kept in clear
        landed = self.url_open(location, allow_redirects=False)
        self.assertEqual(landed.status_code, 200, landed.text)
        self.assertEqual(len(self.requests_of(self.user)), 1)
        self.assertFalse(self.env["m365.oauth.callback"].sudo().search([]))  # taken once

    def test_a_code_in_the_query_string_is_not_accepted(self):
        """An old-style GET with ``?code=`` (already in the access log) does not connect."""
        self.authenticate("m365-atk", "m365-atk")
        query = self.start()
        answer = self.url_open(
            f"{REDIRECT_PATH}?{urlencode({'state': query['state'], 'code': 'in-a-url'})}",
            allow_redirects=False,
        )
        self.assertEqual(answer.status_code, 400)
        self.assertFalse(self.requests_of(self.user))

    def test_an_answer_left_waiting_past_its_lifetime_is_dropped(self):
        self.authenticate("m365-atk", "m365-atk")
        query = self.start()
        posted = requests.post(
            self.base_url() + REDIRECT_PATH,
            data={"code": "late-code", "state": query["state"]},
            allow_redirects=False,
            timeout=12,
        )
        self.assertEqual(posted.status_code, 303)
        self.env.cr.execute(
            "UPDATE m365_oauth_callback SET create_date = now() at time zone 'utc' - interval '16 minutes'"
        )
        answer = self.url_open(posted.headers["Location"], allow_redirects=False)
        self.assertEqual(answer.status_code, 400)
        self.assertFalse(self.requests_of(self.user))
        self.assertFalse(self.env["m365.oauth.callback"].sudo().search([]))

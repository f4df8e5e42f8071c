"""Push: the daemon's subscription RPC, who sees subscriptions, the notification endpoint Graph
posts to, and the settings the daemon reads."""

import hashlib
import json
from datetime import datetime, timedelta
from urllib.parse import quote

from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, new_test_user, tagged

from odoo import fields

from ..controllers.push import NOTIFICATION_PATH
from .common import M365Case, unique, wire_spec

T0 = "2031-01-01T09:00:00+00:00"


def at(seconds):
    return (datetime.fromisoformat(T0) + timedelta(seconds=seconds)).isoformat()


def digest(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def wire_subscription(account_id, kind="mail", **overrides):
    values = {
        "account_id": account_id,
        "kind": kind,
        "graph_id": unique("sub-"),
        "resource": "me/messages" if kind == "mail" else "me/events",
        "expires_at": at(2 * 86400),
        "client_state_hash": digest("secret"),
        "state": "active",
        "last_notified_at": None,
        "detail": "",
        "notification_url": "https://odoo.contoso.example/m365/notifications",
    }
    values.update(overrides)
    return values


def odoo_wire(values):
    """What comes back: None as False (XML-RPC)."""
    return {k: (False if v is None else v) for k, v in values.items()}


@tagged("post_install", "-at_install")
class TestPushApi(M365Case):
    def claim(self, holder, account_id, now):
        leases = self.api.lease_accounts(
            {"holder": holder, "limit": 10_000, "ttl_seconds": 60, "now": now}
        )
        return next(lease for lease in leases if lease["account_id"] == account_id)

    def test_save_replace_list_and_drop(self):
        account = self.account()
        self.assertEqual(self.api.subscriptions({"account_id": account["id"]}), [])
        mail = wire_subscription(account["id"])
        calendar = wire_subscription(account["id"], "calendar", detail="created")
        self.assertIs(self.api.save_subscription({"subscription": mail, "lease": False}), True)
        self.api.save_subscription({"subscription": calendar, "lease": None})
        self.assertEqual(
            self.api.subscriptions({"account_id": account["id"]}),
            [odoo_wire(calendar), odoo_wire(mail)],
        )
        renewed = dict(mail, graph_id=unique("sub-"), expires_at=at(3 * 86400), state="lapsed")
        self.api.save_subscription({"subscription": renewed})
        stored = self.api.subscriptions({"account_id": account["id"]})
        self.assertEqual(len(stored), 2)
        self.assertIn(odoo_wire(renewed), stored)
        self.assertEqual(self.api.subscriptions_by_graph_id({"graph_ids": [mail["graph_id"]]}), {})
        self.api.drop_subscription({"account_id": account["id"], "kind": "mail"})
        self.api.drop_subscription({"account_id": account["id"], "kind": "mail"})  # gone: fine
        self.assertEqual(
            [s["kind"] for s in self.api.subscriptions({"account_id": account["id"]})],
            ["calendar"],
        )

    def test_a_lease_guards_the_save(self):
        account = self.account()
        lease = self.claim("worker-a", account["id"], T0)
        self.api.save_subscription(
            {"subscription": wire_subscription(account["id"]), "lease": lease}
        )
        self.api.release_lease({"lease": lease})
        with self.assertRaisesRegex(UserError, "^M365:LeaseLost: "):
            self.api.save_subscription(
                {
                    "subscription": wire_subscription(account["id"], "calendar"),
                    "lease": lease,
                }
            )
        self.assertEqual(len(self.api.subscriptions({"account_id": account["id"]})), 1)
        other = self.account()
        current = self.claim("worker-b", account["id"], at(1))
        with self.assertRaisesRegex(UserError, "^M365:LeaseLost: "):  # another account's lease
            self.api.save_subscription(
                {"subscription": wire_subscription(other["id"]), "lease": current}
            )

    def test_unknown_accounts_and_other_users_are_refused(self):
        for method, payload in (
            ("subscriptions", {"account_id": 0}),
            ("request_sync", {"account_id": 0, "at": T0}),
            ("save_subscription", {"subscription": wire_subscription(0)}),
        ):
            with self.assertRaisesRegex(UserError, "^M365:UnknownAccount: "):
                getattr(self.api, method)(payload)
        account = self.account()
        api = self.env["m365.daemon.api"].with_user(self.user_a)
        for method, payload in (
            ("crm_settings", {}),
            ("subscriptions", {"account_id": account["id"]}),
            ("record_notifications", {"notifications": [], "at": T0}),
        ):
            with self.assertRaises(AccessError):
                getattr(api, method)(payload)

    def test_request_sync_keeps_the_latest_and_goes_on_the_wire(self):
        account = self.account()
        self.assertIs(self.api.get_account({"account_id": account["id"]})["sync_requested_at"], False)
        self.api.request_sync({"account_id": account["id"], "at": at(10)})
        self.api.request_sync({"account_id": account["id"], "at": at(5)})  # older: ignored
        self.assertEqual(
            self.api.get_account({"account_id": account["id"]})["sync_requested_at"], at(10)
        )
        self.api.request_sync({"account_id": account["id"], "at": at(11)})
        self.assertEqual(
            self.api.get_account({"account_id": account["id"]})["sync_requested_at"], at(11)
        )

    def test_notifications_ask_for_a_cycle_and_lifecycle_sets_the_state(self):
        account, other = self.account(), self.account()
        mail = wire_subscription(account["id"])
        calendar = wire_subscription(account["id"], "calendar")
        theirs = wire_subscription(other["id"])
        for item in (mail, calendar, theirs):
            self.api.save_subscription({"subscription": item})
        asked = self.api.record_notifications(
            {
                "notifications": [
                    {"subscription_id": mail["graph_id"], "change_type": "created",
                     "lifecycle_event": None, "resource": "Users/x/Messages/1"},
                    {"subscription_id": mail["graph_id"], "change_type": "updated",
                     "lifecycle_event": False, "resource": "Users/x/Messages/2"},
                    {"subscription_id": calendar["graph_id"], "change_type": None,
                     "lifecycle_event": "subscriptionRemoved", "resource": ""},
                    {"subscription_id": "unknown", "change_type": "created",
                     "lifecycle_event": None, "resource": ""},
                ],
                "at": at(1),
            }
        )
        self.assertEqual(asked, [account["id"]])
        self.assertEqual(self.api.get_account({"account_id": account["id"]})["sync_requested_at"], at(1))
        self.assertIs(self.api.get_account({"account_id": other["id"]})["sync_requested_at"], False)
        stored = {s["kind"]: s for s in self.api.subscriptions({"account_id": account["id"]})}
        self.assertEqual((stored["mail"]["state"], stored["mail"]["last_notified_at"]), ("active", at(1)))
        self.assertEqual(stored["calendar"]["state"], "removed")
        asked = self.api.record_notifications(
            {
                "notifications": [
                    {"subscription_id": theirs["graph_id"], "lifecycle_event": "reauthorizationRequired"},
                    {"subscription_id": mail["graph_id"], "lifecycle_event": "missed"},
                ],
                "at": at(2),
            }
        )
        self.assertEqual(asked, sorted([account["id"], other["id"]]))
        found = self.api.subscriptions_by_graph_id(
            {"graph_ids": [theirs["graph_id"], mail["graph_id"], "nope"]}
        )
        self.assertEqual(set(found), {theirs["graph_id"], mail["graph_id"]})
        self.assertEqual(found[theirs["graph_id"]]["state"], "reauthorize")
        self.assertEqual(found[mail["graph_id"]]["state"], "active")  # missed: only a cycle
        self.assertEqual(found[mail["graph_id"]]["client_state_hash"], digest("secret"))
        self.assertEqual(self.api.record_notifications({"notifications": [], "at": at(3)}), [])

    def test_sync_now_and_resume_set_the_request_time(self):
        account = self.env["m365.account"].browse(self.account(owner="m365-test-a")["id"])
        mine = account.with_user(self.user_a)
        before = fields.Datetime.now().replace(microsecond=0)
        mine.action_sync_now()
        self.assertTrue(mine.sync_requested)
        self.assertGreaterEqual(mine.sync_requested_at, before)
        self.api.set_account_status(
            {"account_id": account.id, "status": "active", "synced_at": at(0)}
        )
        self.assertFalse(mine.sync_requested)  # a finished cycle clears the display flag only
        self.assertTrue(mine.sync_requested_at)
        mine.action_pause()
        self.env.cr.execute(
            "UPDATE m365_account SET sync_requested_at = NULL WHERE id = %s", (account.id,)
        )
        account.invalidate_recordset(["sync_requested_at"])
        mine.action_resume()
        self.assertGreaterEqual(mine.sync_requested_at, before)

    def test_push_active_shows_a_live_subscription(self):
        account = self.env["m365.account"].browse(self.account()["id"])
        self.assertFalse(account.push_active)
        future = fields.Datetime.now() + timedelta(days=1)
        self.api.save_subscription(
            {"subscription": wire_subscription(account.id, expires_at=future.isoformat())}
        )
        account.invalidate_recordset(["push_active"])
        self.assertTrue(account.push_active)
        self.api.save_subscription(
            {"subscription": wire_subscription(account.id, state="lapsed", expires_at=future.isoformat())}
        )
        account.invalidate_recordset(["push_active"])
        self.assertFalse(account.push_active)


@tagged("post_install", "-at_install")
class TestPushSecurity(M365Case):
    def test_owners_see_their_own_subscriptions_and_no_hash(self):
        mine = self.account(owner="m365-test-a")
        theirs = self.account(owner="m365-test-b")
        for account in (mine, theirs):
            self.api.save_subscription({"subscription": wire_subscription(account["id"])})
        Subscription = self.env["m365.subscription"]
        seen = Subscription.with_user(self.user_a).search([])
        self.assertEqual(seen.account_id.ids, [mine["id"]])
        self.assertEqual(seen.state, "active")
        other = Subscription.search([("account_id", "=", theirs["id"])])
        with self.assertRaises(AccessError):
            other.with_user(self.user_a).read(["state"])
        with self.assertRaises(AccessError):
            seen.read(["client_state_hash"])
        self.assertNotIn("client_state_hash", Subscription.with_user(self.user_a).fields_get())
        with self.assertRaises(AccessError):
            seen.write({"state": "removed"})
        manager = new_test_user(
            self.env,
            login=unique("mgr-"),
            groups="base.group_user,crm_microsoft365.group_m365_manager",
        )
        every = Subscription.with_user(manager).search([])
        self.assertIn(mine["id"], every.account_id.ids)
        self.assertIn(theirs["id"], every.account_id.ids)
        with self.assertRaises(AccessError):
            every.read(["client_state_hash"])
        # The daemon reads it through its API only (its user has no access to the models).
        (wire,) = self.api.subscriptions({"account_id": mine["id"]})
        self.assertEqual(wire["client_state_hash"], digest("secret"))


@tagged("post_install", "-at_install")
class TestCrmSettings(M365Case):
    def test_settings_for_the_daemon(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("web.base.url", "https://crm.contoso.example/")
        params.set_param("crm_microsoft365.sync_interval", False)
        params.set_param("crm_microsoft365.blocklist", False)
        params.set_param("crm_microsoft365.push_enabled", False)
        params.set_param("database.uuid", "6c1e6f2a-3b34-11ef-9a4c-0242ac120002")
        tag = "15d2625c"  # the first 8 hex digits of the SHA-256 of that uuid
        self.assertEqual(
            self.api.crm_settings({}),
            {
                "sync_interval_seconds": False,
                "blocklist": [],
                "notification_url": "",
                "crm_tag": tag,
            },
        )
        settings = self.env["res.config.settings"].create(
            {
                "m365_sync_interval": 3,
                "m365_blocklist": "noreply@contoso.com; *@news.example\nspam.example,, ",
                "m365_push_enabled": True,
            }
        )
        settings.execute()
        self.assertEqual(
            self.api.crm_settings({}),
            {
                "sync_interval_seconds": 180,
                "blocklist": ["noreply@contoso.com", "*@news.example", "spam.example"],
                "notification_url": "https://crm.contoso.example/m365/notifications",
                "crm_tag": tag,
            },
        )
        # Another database (another uuid) has another tag.
        params.set_param("database.uuid", "0b6d1f3e-3b35-11ef-9a4c-0242ac120002")
        self.assertNotEqual(self.api.crm_settings({})["crm_tag"], tag)
        self.assertEqual(
            settings.m365_notification_url, "https://crm.contoso.example/m365/notifications"
        )
        self.assertTrue(settings.m365_notification_url_https)


@tagged("post_install", "-at_install")
class TestNotificationEndpoint(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        daemon = new_test_user(
            cls.env,
            login="m365-push-daemon",
            groups="base.group_user,crm_microsoft365.group_m365_daemon",
        )
        cls.api = cls.env["m365.daemon.api"].with_user(daemon)
        account = cls.api.upsert_account({"spec": wire_spec()})
        cls.account = cls.env["m365.account"].browse(account["id"])
        cls.mail = wire_subscription(account["id"], client_state_hash=digest("mail-secret"))
        cls.calendar = wire_subscription(
            account["id"], "calendar", client_state_hash=digest("calendar-secret")
        )
        for item in (cls.mail, cls.calendar):
            cls.api.save_subscription({"subscription": item})

    def subscription(self, kind):
        return self.env["m365.subscription"].search(
            [("account_id", "=", self.account.id), ("kind", "=", kind)]
        )

    def post(self, body, query=""):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        response = self.opener.post(
            f"{self.base_url()}{NOTIFICATION_PATH}{query}",
            data=data,
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=12,
            allow_redirects=False,
        )
        self.env.invalidate_all()
        return response

    def change(self, subscription, secret, change_type="created"):
        return {
            "subscriptionId": subscription["graph_id"],
            "subscriptionExpirationDateTime": subscription["expires_at"],
            "changeType": change_type,
            "clientState": secret,
            "resource": "Users/oid/Messages/AAMk1",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "Users/oid/Messages/AAMk1",
                "@odata.etag": 'W/"CQAAABYAAA"',
                "id": "AAMk1",
            },
            "tenantId": "tenant",
        }

    def test_the_validation_token_is_echoed_as_text(self):
        token = "Validation: Testing client application reachability for subscription Request-Id: 1f0c"
        for method in (self.opener.post, self.opener.get):
            response = method(
                f"{self.base_url()}{NOTIFICATION_PATH}?validationToken={quote(token)}",
                data=b"" if method == self.opener.post else None,
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=12,
            )
            self.assertEqual(response.status_code, 200)
            self.assertEqual(response.headers["Content-Type"].split(";")[0], "text/plain")
            self.assertEqual(response.text, token)
            self.assertNotIn("session_id", response.cookies)

    def test_a_valid_notification_asks_for_a_cycle(self):
        before = fields.Datetime.now().replace(microsecond=0)
        response = self.post({"value": [self.change(self.mail, "mail-secret")]})
        self.assertEqual(response.status_code, 202)
        self.assertEqual(response.content, b"")
        self.assertGreaterEqual(self.account._effective_sync_request(), before)
        self.assertFalse(self.account.sync_requested_at)  # the account row is not written
        self.assertEqual(self.account.last_sync_request, self.account._effective_sync_request())
        mail = self.subscription("mail")
        self.assertGreaterEqual(mail.last_notified_at, before)
        self.assertEqual(mail.state, "active")
        self.assertFalse(self.subscription("calendar").last_notified_at)

    def test_a_wrong_client_state_changes_nothing(self):
        with self.assertLogs("odoo.addons.crm_microsoft365.controllers.push", "WARNING") as logs:
            response = self.post(
                {
                    "value": [
                        self.change(self.mail, "calendar-secret"),
                        self.change(self.calendar, None),
                        dict(self.change(self.mail, "x"), clientState=12),
                    ]
                }
            )
        self.assertEqual(response.status_code, 202)
        self.assertFalse(self.account._effective_sync_request())
        self.assertFalse(self.subscription("mail").last_notified_at)
        self.assertFalse(self.subscription("calendar").last_notified_at)
        text = "\n".join(logs.output)
        self.assertIn("3 ignored", text)
        self.assertNotIn("secret", text)
        self.assertNotIn(digest("mail-secret"), text)

    def test_lifecycle_notifications(self):
        removed = {
            "subscriptionId": self.calendar["graph_id"],
            "subscriptionExpirationDateTime": self.calendar["expires_at"],
            "lifecycleEvent": "subscriptionRemoved",
            "clientState": "calendar-secret",
            "tenantId": "tenant",
        }
        reauthorize = dict(
            removed,
            subscriptionId=self.mail["graph_id"],
            lifecycleEvent="reauthorizationRequired",
            clientState="mail-secret",
        )
        response = self.post({"value": [removed, reauthorize]})
        self.assertEqual(response.status_code, 202)
        self.assertEqual(self.subscription("calendar").state, "removed")
        self.assertEqual(self.subscription("mail").state, "reauthorize")
        self.assertTrue(self.account._effective_sync_request())

    def test_unknown_subscriptions_are_ignored(self):
        stranger = dict(self.change(self.mail, "mail-secret"), subscriptionId="not-ours")
        self.assertEqual(self.post({"value": [stranger]}).status_code, 202)
        self.assertFalse(self.account._effective_sync_request())

    def test_a_malformed_body_is_a_bad_request(self):
        for body in (b"{not json", b"[]", {"value": "x"}, {"value": [1]}, b"", {"other": []}):
            response = self.post(body)
            self.assertEqual(response.status_code, 400, body)
            self.assertNotIn("Traceback", response.text)
        self.assertFalse(self.account._effective_sync_request())

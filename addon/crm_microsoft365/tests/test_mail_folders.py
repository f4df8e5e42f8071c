from odoo.exceptions import AccessError
from odoo.tests import Form, HttpCase, new_test_user, tagged

from .common import INBOX, SENT, M365Case, wire_spec

KEY = "AAMkKeyAccounts"
DIGESTS = "AAMkDigests"


def wire_folder(graph_id, name, path, parent=None, total=0, unread=0, search=False):
    """MailFolder as the daemon's Odoo adapter sends it (m365sync.crm.wire)."""
    return {
        "graph_id": graph_id,
        "display_name": name,
        "parent_id": parent,
        "well_known_name": None,
        "total_items": total,
        "child_folder_count": 0,
        "unread_items": unread,
        "path": path,
        "is_search": search,
        "is_hidden": False,
    }


TREE = [
    wire_folder(INBOX, "Inbox", "Inbox", "ROOT", total=40, unread=3),
    wire_folder(KEY, "Key accounts", "Inbox/Key accounts", INBOX, total=7),
    wire_folder(DIGESTS, "Weekly digests", "Inbox/Weekly digests", INBOX, search=True),
    wire_folder(SENT, "Sent Items", "Sent Items", "ROOT", total=12),
]


@tagged("post_install", "-at_install")
class TestMailFolders(M365Case):
    """Issue #14: the account's folder tree and folder choice, stored in Odoo for the daemon."""

    def setUp(self):
        super().setUp()
        self.account_id = self.account(owner="m365-test-a")["id"]
        self.api.store_mail_folders(
            {"account_id": self.account_id, "folders": TREE, "synced": [INBOX, SENT]}
        )
        self.record = self.env["m365.account"].browse(self.account_id)

    def folder(self, graph_id):
        return self.record.mail_folder_ids.filtered(lambda f: f.graph_id == graph_id)

    def test_the_tree_is_stored_in_order_with_counts(self):
        rows = self.record.mail_folder_ids
        self.assertEqual(
            rows.mapped("path"),
            ["Inbox", "Inbox/Key accounts", "Inbox/Weekly digests", "Sent Items"],
        )
        key = self.folder(KEY)
        self.assertEqual((key.depth, key.total_items, key.synced), (1, 7, False))
        self.assertEqual(key.indented_name, "\u00a0" * 4 + "Key accounts")
        self.assertTrue(self.folder(INBOX).synced and self.folder(DIGESTS).is_search)
        listed = self.api.list_mail_folders({"account_id": self.account_id})
        self.assertEqual([f["folder"]["graph_id"] for f in listed], [INBOX, KEY, DIGESTS, SENT])
        self.assertEqual(listed[0]["folder"]["unread_items"], 3)
        self.assertTrue(listed[0]["synced"])

    def test_the_default_choice_is_inbox_and_sent_items(self):
        wire = self.api.get_account({"account_id": self.account_id})
        self.assertEqual(wire["folder_choice"], "inbox_sent")
        self.assertEqual(wire["mail_folders"], [])

    def test_ticked_folders_go_to_the_daemon_by_id_with_their_path(self):
        account = self.record.with_user(self.user_a)
        account.mail_folder_choice = "chosen"
        account.mail_folder_ids.filtered(lambda f: f.graph_id == KEY).chosen = True
        wire = self.api.get_account({"account_id": self.account_id})
        self.assertEqual(wire["folder_choice"], "chosen")
        self.assertEqual(wire["mail_folders"], [KEY])
        self.assertEqual(wire["mail_folder_labels"], {KEY: "Inbox/Key accounts"})

    def test_a_moved_folder_keeps_its_tick_and_a_deleted_one_leaves(self):
        self.folder(KEY).with_user(self.user_a).chosen = True
        moved = wire_folder(KEY, "Strategic", "Sent Items/Strategic", SENT, total=8)
        self.api.store_mail_folders(
            {"account_id": self.account_id, "folders": [TREE[0], moved, TREE[3]], "synced": [KEY]}
        )
        self.record.invalidate_recordset()
        self.assertEqual(self.record.mail_folder_ids.mapped("graph_id"), [INBOX, SENT, KEY])
        key = self.folder(KEY)
        self.assertTrue(key.chosen and key.synced)
        self.assertEqual((key.path, key.name, key.total_items), ("Sent Items/Strategic", "Strategic", 8))

    def test_the_owner_ticks_folders_but_the_tree_is_outlooks(self):
        key = self.folder(KEY).with_user(self.user_a)
        key.chosen = True
        with self.assertRaises(AccessError):
            key.write({"name": "Renamed in Odoo"})
        with self.assertRaises(AccessError):
            self.env["m365.mail.folder"].with_user(self.user_a).create(
                {"account_id": self.account_id, "graph_id": "AAMkNew", "path": "New"}
            )
        others = self.env["m365.mail.folder"].with_user(self.user_b).search(
            [("account_id", "=", self.account_id)]
        )
        self.assertFalse(others)

    def test_changing_the_choice_or_a_tick_asks_for_a_cycle(self):
        account = self.record.with_user(self.user_a)
        self.assertFalse(account.sync_requested_at)
        account.mail_folder_choice = "chosen"
        first = self.record.sync_requested_at
        self.assertTrue(first)
        self.record.sudo().sync_requested_at = False
        self.folder(KEY).with_user(self.user_a).chosen = True
        self.record.invalidate_recordset()
        self.assertTrue(self.record.sync_requested_at)

    def test_the_account_form_shows_the_tree_with_checkboxes(self):
        form = Form(self.record.with_user(self.user_a))
        form.mail_folder_choice = "chosen"
        self.assertEqual(len(form.mail_folder_ids), 4)
        with form.mail_folder_ids.edit(1) as row:
            self.assertEqual(row.indented_name, "\u00a0" * 4 + "Key accounts")
            row.chosen = True
        form.save()
        self.assertEqual(self.record.mail_folder_ids.filtered("chosen").graph_id, KEY)


@tagged("post_install", "-at_install")
class TestFolderChoiceTour(HttpCase):
    """Issue #15: the account form's folder choice, clicked through as its owner would."""

    def test_an_owner_ticks_a_folder_and_the_daemon_gets_it(self):
        new_test_user(self.env, login="m365-folders-tour", groups="base.group_user")
        daemon = new_test_user(self.env, login="m365-folders-daemon", groups="crm_microsoft365.group_m365_daemon")
        api = self.env["m365.daemon.api"].with_user(daemon)
        account_id = api.upsert_account({"spec": wire_spec(owner="m365-folders-tour")})["id"]
        api.store_mail_folders({"account_id": account_id, "folders": TREE, "synced": [INBOX, SENT]})
        self.start_tour(
            f"/odoo/action-crm_microsoft365.m365_account_action/{account_id}",
            "crm_microsoft365_folder_choice",
            login="m365-folders-tour",
        )
        wire = api.get_account({"account_id": account_id})
        self.assertEqual((wire["folder_choice"], wire["mail_folders"]), ("chosen", [KEY]))

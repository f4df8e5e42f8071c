"""Mail goes from the emulator through the daemon into Odoo, once; an unreachable Odoo loses
nothing and says so.

Checked the way a person would, with plain XML-RPC on Odoo's own models (``m365.account``,
``m365.mail.message.link``, ``m365.mail.message``, ``m365.mail.participant``,
``m365.mail.thread``), not through the daemon's API.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from m365sync import cli
from m365sync.domain import AccountStatus
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.seed import crm_contacts
from m365sync.errors import CrmUnavailable, advice_for
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from m365sync.service.runtime import Runtime

from .conftest import (
    OdooStack,
    free_port,
    load,
    write_config,
)

pytestmark = [pytest.mark.odoo, pytest.mark.slow]


def synced_contacts(mailbox: Mailbox, folders: tuple[str, ...] = ("inbox", "sentitems")):
    """The mailbox's CRM-worthy people who write or get mail in the folders the daemon syncs."""
    wanted = {mailbox.resolve_folder(f)["id"] for f in folders}
    seen: set[str] = set()
    for folder_id, msg, raw in mailbox.iter_messages():
        if raw or folder_id not in wanted:
            continue
        parties = [msg.get("from"), msg.get("sender")]
        parties += (msg.get("toRecipients") or []) + (msg.get("ccRecipients") or [])
        for party in parties:
            address = ((party or {}).get("emailAddress") or {}).get("address")
            if address:
                seen.add(address.lower())
    return [c for c in crm_contacts(mailbox) if c["email"].lower() in seen]


def seed_contacts(stack: OdooStack, contacts: list[dict[str, Any]]) -> dict[str, int]:
    """Normalised address -> the partner the daemon will match. Contacts are created by a
    person's plain XML-RPC ``create``, unless the shared database has one for the address."""
    emails = [c["email"] for c in contacts]
    known = stack.gateway.find_partners_by_emails(emails)
    for contact in contacts:
        if contact["email"].lower() not in known:
            stack.admin.execute_kw(
                "res.partner",
                "create",
                [{"name": contact["name"] or contact["email"], "email": contact["email"]}],
            )
    found = stack.gateway.find_partners_by_emails(emails)
    assert set(found) == {e.lower() for e in emails}
    return {address: partner.id for address, partner in found.items()}


def connect(stack: OdooStack):
    account = connect_account(stack.runtime, browser="follow", announce=lambda _text: None)
    stack.account_ids.append(account.id)
    return account


def stored_for(stack: OdooStack, account_id: int) -> dict[str, Any]:
    """What Odoo holds for the account: links, messages, participants, threads, folders."""
    links = stack.read(
        "m365.mail.message.link",
        [("account_id", "=", account_id)],
        ["graph_id", "message_id", "folder_id"],
    )
    message_ids = sorted({link["message_id"][0] for link in links})
    participants = stack.read(
        "m365.mail.participant",
        [("message_id", "in", message_ids)],
        ["message_id", "role", "address", "partner_id"],
    )
    threads = stack.read(
        "m365.mail.thread", [("message_ids", "in", message_ids)], ["conversation_id"]
    )
    # Cursors are the daemon's private state (only its group reads them): ask its API.
    folders = stack.read("m365.account.folder", [("account_id", "=", account_id)], ["folder_id"])
    cursors = [
        (f["folder_id"], stack.gateway.get_cursor(account_id, f["folder_id"])) for f in folders
    ]
    return {
        "links": sorted((link["graph_id"], link["folder_id"]) for link in links),
        "messages": message_ids,
        "participants": sorted(
            (p["message_id"][0], p["role"], p["address"], p["partner_id"] and p["partner_id"][0])
            for p in participants
        ),
        "threads": sorted(t["id"] for t in threads),
        "cursors": sorted(
            (folder, c.link if c else None, c.kind if c else None) for folder, c in cursors
        ),
    }


def test_mail_reaches_odoo_once_and_the_account_turns_active(odoo_stack: OdooStack) -> None:
    stack = odoo_stack
    contacts = synced_contacts(stack.mailbox)[:6]
    assert len(contacts) >= 3
    partners = seed_contacts(stack, contacts)

    account = connect(stack)
    assert account.status is AccountStatus.CONNECTED
    run = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
    assert run.error is None
    assert run.pages >= 2 and run.imported > 0

    first = stored_for(stack, account.id)
    assert len(first["messages"]) == run.imported == stack.gateway.count_messages(account.id)
    assert len(first["cursors"]) == 2 and all(kind == "delta" for *_, kind in first["cursors"])
    matched = {pid for *_, pid in first["participants"] if pid}
    assert set(partners.values()) <= matched  # every seeded contact is on its mail
    assert first["threads"]
    for partner_id in partners.values():
        threads = stack.gateway.threads_for_partner(partner_id)
        assert threads, f"partner {partner_id} has mail but no thread"
        assert all(partner_id in t.partner_ids for t in threads)

    (row,) = stack.read("m365.account", [("id", "=", account.id)], ["status", "last_sync_at"])
    assert row["status"] == "active" and row["last_sync_at"]
    assert stack.gateway.get_account(account.id).status is AccountStatus.ACTIVE
    assert stack.gateway.last_sync_run(account.id).imported == run.imported

    again = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
    assert again.error is None
    assert (again.imported, again.updated, again.removed) == (0, 0, 0)
    second = stored_for(stack, account.id)
    assert {k: v for k, v in second.items() if k != "cursors"} == {
        k: v for k, v in first.items() if k != "cursors"
    }
    assert stack.gateway.get_account(account.id).status is AccountStatus.ACTIVE


def test_odoo_down_loses_nothing_and_says_where(
    odoo_stack: OdooStack, tmp_path, capsys, caplog, monkeypatch
) -> None:
    stack = odoo_stack
    (contact,) = synced_contacts(stack.mailbox)[:1]
    seed_contacts(stack, [contact])  # the daemon keeps only mail that matches the CRM
    account = connect(stack)
    assert sync_account_mail(stack.runtime, stack.gateway.get_account(account.id)).error is None
    before = stored_for(stack, account.id)
    stack.mailbox.add_message(
        "inbox",
        {
            "subject": "Arrives while the CRM is down",
            "from": {"emailAddress": {"address": contact["email"], "name": contact["name"]}},
            "toRecipients": [{"emailAddress": {"address": stack.mailbox.user["mail"]}}],
            "body": {"contentType": "html", "content": "<p>hello</p>"},
        },
    )

    down_url = f"http://127.0.0.1:{free_port()}"
    down_path = write_config(tmp_path, stack.emulator, odoo_url=down_url, name="down.toml")
    down = Runtime.build(load(down_path))
    key = os.environ["ODOO_PASSWORD"]
    try:
        # The cycle's own status writes go to the CRM too: with the CRM down, the only thing
        # that may come out is the typed CrmUnavailable, in words naming the URL.
        try:
            down_run = sync_account_mail(down, account)
        except CrmUnavailable as error:
            down_run = None
            sentence = advice_for(error).sentence
        else:
            sentence = down_run.error or ""
        assert down_url in sentence and "could not be reached" in sentence, sentence
        assert key not in sentence
        assert down_run is None or down_run.imported == 0
    finally:
        down.close()
    assert stored_for(stack, account.id) == before  # no cursor moved, nothing written

    # The command line says the same in one line and exits 2.
    monkeypatch.setenv("M365SYNC_ODOO__API_KEY", key)
    assert cli.main(["-c", str(down_path), "sync", "--once"]) == 2
    err = capsys.readouterr().err
    assert down_url in err and "cannot be reached" in err
    assert "Traceback" not in err and key not in err and key not in caplog.text

    # Back up: the next cycle resumes from the stored cursor and takes the new message.
    resumed = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
    assert resumed.error is None and resumed.imported == 1
    assert stack.gateway.get_account(account.id).status is AccountStatus.ACTIVE


def test_a_resync_after_410_removes_in_odoo_what_was_deleted_meanwhile(
    odoo_stack: OdooStack,
) -> None:
    """Issue #14 through the real addon: mail deleted while the delta state was lost goes
    from Odoo once the fresh round completes, and the folders' skip tallies stay one round's."""
    stack = odoo_stack
    seed_contacts(stack, synced_contacts(stack.mailbox))
    account = connect(stack)
    assert sync_account_mail(stack.runtime, stack.gateway.get_account(account.id)).error is None

    def tallies() -> dict[str, str]:
        rows = stack.read(
            "m365.account.folder", [("account_id", "=", account.id)], ["folder_id", "skipped"]
        )
        return {row["folder_id"]: row["skipped"] for row in rows}

    before = stack.gateway.message_ids_for_account(account.id)
    skipped = tallies()
    imids = list(before.values())
    doomed = [
        m["id"]
        for m in stack.mailbox.messages_in("inbox")
        if m["id"] in before and imids.count(before[m["id"]]) == 1
    ][:3]
    assert len(doomed) == 3
    for graph_id in doomed:
        stack.mailbox.delete_message(graph_id)
    stack.mailbox.drop_sync_states()

    resync = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))

    assert resync.error is None and resync.removed == 3
    links = stack.read("m365.mail.message.link", [("account_id", "=", account.id)], ["graph_id"])
    assert {row["graph_id"] for row in links} == set(before) - set(doomed)
    gone = [before[g] for g in doomed]
    assert not stack.read("m365.mail.message", [("internet_message_id", "in", gone)], ["id"])
    assert tallies() == skipped

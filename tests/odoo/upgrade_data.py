"""Scripts run by ``odoo-bin shell`` for the upgrade-in-place test: one fills a database the
way the daemon does (through the addon's daemon API as its technical user: a mailbox with
threads, meetings, outbox row sent and one queued), one counts what a
user would see. Both print one ``M365-COUNTS=`` JSON line."""

COUNT = """
import json
models = ["m365.account", "m365.mail.thread", "m365.mail.message", "m365.mail.participant",
          "m365.event.binding", "m365.outbox", "m365.sync.run", "calendar.event",
          "calendar.recurrence"]
counts = {m: env[m].sudo().with_context(active_test=False).search_count([]) for m in models}
partner = env["res.partner"].search([("email", "=", "ann.upgrade@example.com")])
counts["threads on Ann"] = len(partner.m365_thread_ids) if partner else -1
daemon_user = env.ref("crm_microsoft365.user_m365_daemon")
counts["daemon user's groups"] = sorted(daemon_user.groups_id.get_external_id().values())
print("M365-COUNTS=" + json.dumps(counts, sort_keys=True))
"""

FILL = (
    """
from datetime import datetime, timedelta, timezone
from odoo.addons.crm_microsoft365.tests.common import (
    placed_page, wire_message, wire_page, wire_spec, wire_stored
)
from odoo.addons.crm_microsoft365.tests.test_calendar_api import event_page, stored, wire_event

daemon = env.ref("crm_microsoft365.user_m365_daemon")
# What versions before 18.0.0.4.0 left: the daemon an internal user (its key read users,
# contacts and chatter); the upgrade's migration must take that away.
daemon.groups_id = [(4, env.ref("base.group_user").id)]
env["ir.module.module"].search([("name", "=", "crm_microsoft365")]).latest_version = "18.0.0.3.0"
api = env["m365.daemon.api"].with_user(daemon)
ann = env["res.partner"].create({"name": "Ann Upgrade", "email": "ann.upgrade@example.com"})
account = api.upsert_account({"spec": wire_spec(owner="admin")})
messages = [
    wire_message(f"g-up-{n}", conversation=f"conv-{n % 3}", sender="ann.upgrade@example.com")
    for n in range(12)
]
known = {ann.email: ann}  # the daemon's match: Ann by her address
page = wire_page(account["id"], upserts=[wire_stored(m, known) for m in messages])
api.store_mail_page({"page": page, "lease": None})
start = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None) + timedelta(days=2)
events = [
    stored(wire_event("ev-up-1", start=start)),
    stored(wire_event("ev-up-2", start=start + timedelta(days=1), subject="Contract")),
]
# As the daemon hands a page over: placed, with the values its event mapping decided.
api.store_event_page({"page": placed_page(api, event_page(account["id"], events)), "lease": None})
admin = env.ref("base.user_admin")
for subject in ("Offer", "Follow-up"):
    env["m365.outbox"].with_user(admin).create({
        "account_id": account["id"], "email_to": "ann.upgrade@example.com",
        "subject": subject, "body_html": "<p>Hello Ann</p>",
    })
env.cr.commit()
"""
    + COUNT
)

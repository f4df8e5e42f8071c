"""Shared builders: users with the least privilege each test needs, and wire payloads exactly
as the daemon's Odoo adapter sends them (m365sync.crm.wire)."""

import uuid
from datetime import date, datetime, timedelta

import requests
from odoo.tests.common import TransactionCase, new_test_user

from ..controllers.main import REDIRECT_PATH

T0 = "2025-03-01T09:00:00+00:00"
INBOX = "AAMkInbox"
SENT = "AAMkSent"
ARCHIVE = "AAMkArchive"


def unique(label="x"):
    return f"{label}{uuid.uuid4().hex[:10]}"


def wire_message(
    graph_id,
    imid=None,
    *,
    folder=INBOX,
    conversation="conv-1",
    subject="Quarterly figures",
    sender="alice@example.com",
    to=("bob@example.com",),
    at=T0,
    body="<p>Hello</p>",
    change_key="ck1",
):
    return {
        "graph_id": graph_id,
        "internet_message_id": imid if imid is not None else f"<{graph_id}@example.com>",
        "conversation_id": conversation,
        "folder_id": folder,
        "subject": subject,
        "sender": {"address": sender, "name": sender.split("@")[0].title()},
        "to": [{"address": a, "name": ""} for a in to],
        "cc": [],
        "bcc": [],
        "reply_to": [],
        "received_at": at,
        "sent_at": at,
        "body_html": body,
        "body_preview": "Hello" if body else None,
        "is_draft": False,
        "has_attachments": False,
        "attachments": [],
        "headers": {},
        "change_key": change_key,
    }


def wire_stored(msg, partners=None):
    """StoredMessage: the message and its participant links (matched by normalised address)."""
    partners = partners or {}
    pairs = [("from", msg["sender"])] + [("to", a) for a in msg["to"]]
    links = []
    for role, addr in pairs:
        key = addr["address"].casefold()
        partner = partners.get(key)
        company = None
        if partner is not None:
            company = partner.id if partner.is_company else (partner.parent_id.id or None)
        links.append(
            {
                "role": role,
                "address": key,
                "name": addr["name"],
                "partner_id": partner.id if partner and not partner.is_company else None,
                "company_id": company,
            }
        )
    return {"message": msg, "participants": links}


def wire_page(account_id, folder=INBOX, upserts=(), removed=(), link=None, kind="delta"):
    return {
        "account_id": account_id,
        "folder_id": folder,
        "upserts": [u if "message" in u else wire_stored(u) for u in upserts],
        "removed_ids": list(removed),
        "cursor": {"link": link or f"https://graph.example/delta?token={unique()}", "kind": kind},
        "skipped": {},
        "moved": {},
    }


def wire_spec(**overrides):
    spec = {
        "address": f"{unique('user')}@contoso.example",
        "display_name": "Test User",
        "tenant_id": unique("tenant-"),
        "object_id": unique("oid-"),
        "owner": "",
        "sealed_token_cache": "eyJhbGciOiJ.sealed.1",
        "privacy": "everything",
        "auto_create": "none",
        "own_domains": [],
    }
    spec.update(overrides)
    return spec


class M365Case(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon_user = new_test_user(
            cls.env,
            login="m365-test-daemon",
            # As the addon's own technical user: the daemon's group only, not an internal user.
            groups="crm_microsoft365.group_m365_daemon",
        )
        cls.user_a = new_test_user(
            cls.env, login="m365-test-a", groups="base.group_user", email="a@contoso.example"
        )
        cls.user_b = new_test_user(
            cls.env, login="m365-test-b", groups="base.group_user", email="b@contoso.example"
        )
        cls.api = cls.env["m365.daemon.api"].with_user(cls.daemon_user)

    def account(self, **overrides):
        return self.api.upsert_account({"spec": wire_spec(**overrides)})

    def partner(self, name, email=None, **values):
        return self.env["res.partner"].create({"name": name, "email": email, **values})


def microsoft_answers(case, **fields):
    """Microsoft's ``form_post`` answer as a browser delivers it: a cross-site POST of
    ``fields`` that carries no Odoo cookie (SameSite=Lax), then, when Odoo answers 303, the
    GET it points to with the browser's session (``case.url_open``). Returns the last answer;
    checks on the way that the code is in no URL and that the POST set no cookie (a new session
    cookie there would sign the user out)."""
    posted = requests.post(case.base_url() + REDIRECT_PATH, data=fields, allow_redirects=False, timeout=12)
    if posted.status_code != 303:
        return posted
    case.assertNotIn("Set-Cookie", posted.headers)
    location = posted.headers["Location"]
    if fields.get("code"):
        case.assertNotIn(fields["code"], location)
    return case.url_open(location, allow_redirects=False)


def placed_page(api, page):
    """A calendar page as the daemon hands it over: echoes dropped, each item placed on its
    bound event or on the same meeting (``crm_event_id``, ``expected_version``).

    A test stand-in for the daemon's planning (m365sync.sync.calendar.plan_inbound, the one
    copy of these rules, which the addon cannot import), from the API's own reads
    (``event_bindings``, ``meeting_candidates``); the daemon's contract suite and e2e tests
    run the real one against this addon."""
    upserts = []
    account_id = page["account_id"]
    items = page.get("upserts") or []
    graph_ids = [s["event"]["graph_id"] for s in items]
    # The daemon's page carries the series masters of its occurrences: their bindings too.
    graph_ids += [s["event"]["series_master_id"] for s in items if s["event"].get("series_master_id")]
    bindings = api.event_bindings({"account_id": account_id, "graph_ids": graph_ids})
    unbound = [s["event"] for s in items if s["event"]["graph_id"] not in bindings]
    candidates = api.meeting_candidates(
        {
            "account_id": account_id,
            "ical_uids": [e["ical_uid"] for e in unbound if e.get("ical_uid")],
            "series_master_ids": [e["series_master_id"] for e in unbound if e.get("series_master_id")],
        }
    ) if unbound else []
    masters = {g: b["crm_event_id"] for g, b in bindings.items()}
    owner = (api.get_account({"account_id": account_id})["address"] or "").strip().casefold()
    taken = set()
    for stored in items:
        item = stored["event"]
        binding = bindings.get(item["graph_id"])
        target = version = None
        if binding:
            if item.get("change_key") and binding["change_key"] == item["change_key"]:
                continue  # an echo
            target, version = binding["crm_event_id"], binding["version"]
        else:
            found = _same_meeting(item, candidates, masters.get(item.get("series_master_id")), taken)
            if found:
                target, version = found["crm_event_id"], found["version"]
                taken.add(target)
        if target:
            masters.setdefault(item["graph_id"], target)
        private = item.get("sensitivity") in ("private", "confidential")
        keep = bool(private and target) if target else bool(stored.get("keep_details"))
        values = odoo_values(item, keep and bool(target))
        upserts.append(
            stored | {"crm_event_id": target, "expected_version": version, "keep_details": keep,
                      "odoo_values": values,
                      "odoo_kept_values": {"privacy": ["confidential"]} if values["privacy"] == "private" else {},
                      "odoo_people_values": odoo_people_values(stored, owner)}
        )
    return page | {"upserts": upserts}


def odoo_values(item, keep_details):
    """The Odoo values the daemon's mapping gives an Outlook item (a test stand-in for
    m365sync.sync.event_mapping.odoo_values, the one copy of the rule, which the addon cannot
    import; the contract and e2e suites run the real one against this addon)."""
    private = item.get("sensitivity") in ("private", "confidential")
    kind = item.get("event_type") or "singleInstance"
    cancelled = bool(item.get("is_cancelled"))
    values = {
        "name": item.get("subject") or None,
        "subject_placeholder": None if item.get("subject") else ("busy" if private else "no_subject"),
        "description": item.get("body_html") or None,
        "location": item.get("location") or None,
        "privacy": "private" if private else "public",
        "show_as": "free" if item.get("show_as") == "free" else "busy",
        "m365_event_type": kind,
        "m365_is_series_master": kind == "seriesMaster",
        "m365_original_start": item.get("original_start"),
        "m365_time_zone": item.get("time_zone") or "UTC",
        "m365_sensitivity": item.get("sensitivity") or "normal",
        "m365_show_as": item.get("show_as") or "busy",
        "m365_is_cancelled": cancelled,
        "m365_online_meeting_url": item.get("online_meeting_url") or None,
        "m365_is_online_meeting": bool(item.get("is_online_meeting")),
        "m365_deleted": False,
        "active": not (cancelled or kind == "seriesMaster"),
    }
    if item.get("is_all_day"):
        first = date.fromisoformat(item.get("start_date") or item["start"][:10])
        end = item.get("end_date")
        last = max(date.fromisoformat(end) - timedelta(days=1) if end else first, first)
        values.update(allday=True, start=f"{first.isoformat()}T08:00:00+00:00",
                      stop=f"{last.isoformat()}T18:00:00+00:00")
    else:
        start, end = item.get("start"), item.get("end")
        if start and not end:
            end = (datetime.fromisoformat(start) + timedelta(hours=1)).isoformat()
        if start and end and datetime.fromisoformat(end) < datetime.fromisoformat(start):
            end = start
        values.update(allday=False, start=start, stop=end)
    if keep_details:
        for name in ("name", "subject_placeholder", "description", "location",
                     "m365_online_meeting_url", "m365_is_online_meeting"):
            values.pop(name)
    return values


# Graph's answers <-> Odoo's attendee states (stand-ins of m365sync.sync.attendees' tables).
STATE_OF_RESPONSE = {"accepted": "accepted", "organizer": "accepted", "declined": "declined",
                     "tentativelyAccepted": "tentative", "none": "needsAction",
                     "notResponded": "needsAction"}
RESPONSE_OF_STATE = {"accepted": "accepted", "declined": "declined",
                     "tentative": "tentativelyAccepted", "needsAction": "notResponded"}


def _key(address):
    return (address or "").strip().casefold() or None


def odoo_people_values(stored, owner):
    """What the daemon makes of an Outlook item's people for Odoo (a test stand-in for
    m365sync.sync.attendees.odoo_people_values, the one copy of the rule, which the addon
    cannot import; the contract and e2e suites run the real one against this addon)."""
    item = stored["event"]
    organizer = item.get("organizer") or {}
    organizer_address = _key(organizer.get("address"))
    states, companies, extra, owner_state = {}, set(), [], None
    for link in stored.get("attendees") or []:
        address = _key(link.get("address"))
        response = link.get("response") or "none"
        state = "accepted" if link.get("role") == "organizer" else STATE_OF_RESPONSE.get(response, "needsAction")
        if owner and address == owner and owner_state is None:
            owner_state = state
        if link.get("company_id"):
            companies.add(int(link["company_id"]))
        if link.get("partner_id"):
            states.setdefault(str(int(link["partner_id"])), state)
        elif address:
            extra.append({"address": address, "name": link.get("name") or "",
                          "role": link.get("role") or "required", "response": response})
    if owner_state is None:
        owner_state = "accepted" if owner and organizer_address == owner else STATE_OF_RESPONSE.get(
            item.get("my_response") or "none", "needsAction")
    return {
        "organizer": {"address": organizer_address, "name": organizer.get("name") or ""}
        if organizer_address else None,
        "attendee_states": states,
        "organizer_state": "accepted",
        "owner_state": owner_state,
        "company_ids": sorted(companies),
        "extra_attendees": extra,
    }


def pushed(change):
    """A pending change as the daemon completes it from the stored people (``odoo_people``):
    organizer, attendees, their addresses and the owner's own answer (a test stand-in for
    m365sync.sync.attendees.push_people_of_odoo; the contract and e2e suites run the real one)."""
    people = change["odoo_people"]
    owner = _key(people["owner_address"])
    organizer = None
    for who in (people["organizer"], people["user"]):
        if who and _key(who["address"]):
            organizer = {"address": _key(who["address"]), "name": who["name"] or ""}
            break
    skip = {owner, organizer["address"] if organizer else None} - {None}
    rows = people["attendees"]
    mine = [r for r in rows if r["is_user"] or (owner and _key(r["address"]) == owner)]
    my_response = RESPONSE_OF_STATE.get(mine[0]["state"], "none") if mine else "none"
    attendees, seen = [], set()
    lines = [(r["address"], r["name"], "required", RESPONSE_OF_STATE.get(r["state"], "none"), r["is_user"])
             for r in rows]
    lines += [(e["address"], e["name"], e["role"], e["response"] or "none", False)
              for e in people["extra_attendees"]]
    for address, name, kind, response, is_user in lines:
        address = _key(address)
        if not address or address in skip or address in seen or is_user or kind == "organizer":
            continue
        seen.add(address)
        kind = kind if kind in ("optional", "resource") else "required"
        attendees.append({"address": address, "name": name or "", "kind": kind, "response": response})
    event = change["event"] | {"organizer": organizer, "attendees": attendees}
    return change | {"event": event, "attendee_addresses": [a["address"] for a in attendees],
                     "my_response": my_response}


def _same_meeting(item, candidates, master, taken):
    alive = [c for c in candidates if not c["deleted"] and c["crm_event_id"] not in taken]
    is_master = item.get("event_type") == "seriesMaster"
    for candidate in alive:
        if item.get("ical_uid") and candidate["ical_uid"] == item["ical_uid"] and (
            candidate["is_series_master"] == is_master
        ):
            return candidate
    if not master or is_master:
        return None
    for candidate in alive:
        if candidate["series_master_id"] != master or candidate["is_series_master"]:
            continue
        if candidate["bound_graph_id"]:
            continue
        if item.get("is_all_day"):
            if candidate["is_all_day"] and candidate["start_date"] == item.get("start_date"):
                return candidate
        elif candidate["start"] == (item.get("original_start") or item.get("start")):
            return candidate
    return None


def push_shape(odoo_event):
    """How the daemon pushes an Odoo event from its stored fields (a test stand-in for
    m365sync.sync.event_mapping.push_shape): "skip" for an occurrence Odoo expanded (Outlook
    makes its own), "series" for the base event of an Odoo series not yet in Outlook."""
    if odoo_event["bound"] or odoo_event["is_series_master"] or not odoo_event["in_series"]:
        return "as_stored"
    if odoo_event["series_has_master"] or not odoo_event["is_series_base"]:
        return "skip"
    return "series"

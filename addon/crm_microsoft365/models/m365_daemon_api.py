"""The daemon's RPC API: one public method per ``CrmGateway`` method (m365sync.crm.gateway).

Each method takes ONE positional argument, ``payload``: a dict of the gateway method's
arguments in wire form (m365sync.crm.wire: dataclasses as objects, enums by value, datetimes
ISO-8601 with offset), and returns the wire form of the result, with two XML-RPC rules:
Odoo marshals without ``allow_none``, so a ``None`` result is returned as ``True`` and every
``None`` inside a result (or an Optional result with no value) as ``False``; integer dict
keys are strings.

Errors are ``UserError`` whose message starts with a machine prefix the adapter maps:
``M365:UnknownAccount:``, ``M365:LeaseLost:``, ``M365:Conflict:``.

No sync logic lives here: the daemon decides, these methods store, each call in the one
transaction Odoo gives an RPC (so a page, its removals and its cursor commit together).
"""

# The "M365:..." errors are machine codes the daemon's adapter maps to its own exceptions;
# translating them would break the mapping, hence no translation for them.
# pylint: disable=translation-required

import hashlib
import json
from datetime import timedelta

from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL, html2plaintext

from odoo import api, fields, models

from .m365_mail_message import sanitize_body
from .m365_tools import (
    dt_from_wire,
    dt_to_wire,
    email_domain,
    json_dumps,
    json_loads,
    normalize_domain,
    normalize_email,
    website_domain,
)
from .res_config_settings import DAEMON_INFO_KEY, DAEMON_SEEN_KEY

DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"
# The one origin marker: every write the daemon makes carries it (echo suppression reads it).
ORIGIN = {"m365_sync_origin": True, "tracking_disable": True, "mail_notrack": True}


def _none_to_false(value):
    """XML-RPC without allow_none: None -> False, recursively."""
    if value is None:
        return False
    if isinstance(value, dict):
        return {str(k): _none_to_false(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_none_to_false(v) for v in value]
    return value


def _opt(value):
    """Optional wire values may come as null or False (XML-RPC)."""
    return None if value is False else value


def _unknown(account_id):
    return UserError(f"M365:UnknownAccount: no Microsoft 365 account with id {account_id}.")


def _fingerprint(message, participants):
    """What decides whether an upsert changes a stored message (ids and folder excluded)."""
    content = {k: v for k, v in message.items() if k not in ("graph_id", "folder_id", "change_key")}
    content["participants"] = [
        [
            p.get("role"),
            normalize_email(p.get("address")),
            p.get("name") or "",
            _opt(p.get("partner_id")),
            _opt(p.get("company_id")),
        ]
        for p in participants
    ]
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class M365DaemonApi(models.AbstractModel):
    _name = "m365.daemon.api"
    _description = "Microsoft 365 daemon API"

    # --- plumbing -------------------------------------------------------------------------------

    def _daemon_env(self):
        """Refuse anyone but the daemon's group; then work as superuser.

        sudo: the daemon writes fields no user may write (leases, cursors, sealed tokens) on
        every user's accounts, and reads partners regardless of record rules to match mail; the
        group check above is what authorises it, and the origin marker labels its writes."""
        if not self.env.user.has_group(DAEMON_GROUP):
            raise AccessError(
                self.env._("Only the m365sync daemon's user may call the Microsoft 365 daemon API.")
            )
        return self.sudo().with_context(**ORIGIN).env

    def _account(self, env, account_id, lock=False):
        account_id = int(account_id)
        if lock:
            env.cr.execute(
                "SELECT id FROM m365_account WHERE id = %s FOR UPDATE", (account_id,)
            )
            if not env.cr.fetchone():
                raise _unknown(account_id)
            return env["m365.account"].browse(account_id)
        account = env["m365.account"].browse(account_id).exists()
        if not account:
            raise _unknown(account_id)
        return account

    @staticmethod
    def _account_wire(account):
        chosen = account.mail_folder_ids.filtered("chosen")
        return {
            "id": account.id,
            "address": account.address or "",
            "display_name": account.mailbox_name or "",
            "tenant_id": account.tenant_id or "",
            "object_id": account.object_id or "",
            "owner": account.user_id.login or "",
            # An account without an owner is the daemon's own (embedded-store style); one whose
            # owner is a portal or public user is never synced (lease_accounts).
            "owner_internal": not account.user_id or account.user_id._is_internal(),
            "status": account.status,
            "status_detail": account.status_detail or "",
            "status_until": dt_to_wire(account.status_until),
            "last_sync_at": dt_to_wire(account.last_sync_at),
            "privacy": account.privacy,
            "auto_create": account.auto_create,
            "own_domains": account.own_domain_list(),
            "sealed_token_cache": account.sealed_token_cache or None,
            "sync_requested_at": dt_to_wire(account._effective_sync_request()),
            # The owner's folder choice (issue #14); ticked folders by their constant ids,
            # with the path Odoo last saw so a sentence can name a folder that is gone.
            "folder_choice": account.mail_folder_choice or "inbox_sent",
            "mail_folders": chosen.mapped("graph_id"),
            "mail_folder_labels": {f.graph_id: f.path or f.graph_id for f in chosen},
        }

    @staticmethod
    def _partner_wire(partner):
        return {
            "id": partner.id,
            "name": partner.name or "",
            "email": partner.email or None,
            "is_company": bool(partner.is_company),
            "parent_id": partner.parent_id.id or None,
            "website": partner.website or None,
        }

    @staticmethod
    def _now(payload):
        return dt_from_wire(_opt(payload.get("now"))) or fields.Datetime.now()

    # --- accounts -------------------------------------------------------------------------------

    @api.model
    def upsert_account(self, payload):
        env = self._daemon_env()
        spec = payload["spec"]
        Account = env["m365.account"]
        address = spec["address"]
        normalized = normalize_email(address)
        tenant, oid = spec.get("tenant_id") or "", spec.get("object_id") or ""
        account = Account
        if tenant and oid:
            account = Account.search(
                [("tenant_id", "=", tenant), ("object_id", "=", oid)], limit=1
            )
            if not account:
                account = Account.search(
                    [
                        ("address_normalized", "=", normalized),
                        "|",
                        ("tenant_id", "in", [False, ""]),
                        ("object_id", "in", [False, ""]),
                    ],
                    order="id",
                    limit=1,
                )
        else:
            account = Account.search(
                [("address_normalized", "=", normalized)], order="id", limit=1
            )
        values = {
            "address": address,
            "mailbox_name": spec.get("display_name") or "",
            "privacy": spec.get("privacy") or "everything",
            "auto_create": spec.get("auto_create") or "none",
            "own_domains": ",".join(
                normalize_domain(d) for d in spec.get("own_domains") or [] if d
            ),
            "status": "connected",
            "status_detail": "",
            "status_until": False,
        }
        owner = spec.get("owner") or ""
        if owner:
            user = env["res.users"].with_context(active_test=False).search(
                [("login", "=", owner)], limit=1
            )
            if user:
                values["user_id"] = user.id
        if tenant and oid:
            values |= {"tenant_id": tenant, "object_id": oid}
        if _opt(spec.get("sealed_token_cache")) is not None:
            values["sealed_token_cache"] = spec["sealed_token_cache"]
        if account:
            account.write(values)
        else:
            values.setdefault("user_id", False)
            account = Account.create(values)
        return _none_to_false(self._account_wire(account))

    @api.model
    def get_account(self, payload):
        env = self._daemon_env()
        return _none_to_false(self._account_wire(self._account(env, payload["account_id"])))

    @api.model
    def list_accounts(self, payload=None):
        env = self._daemon_env()
        # The contract asks for every account; there are few (one per connected mailbox).
        accounts = env["m365.account"].search([], order="id")  # pylint: disable=no-search-all
        return _none_to_false([self._account_wire(a) for a in accounts])

    @api.model
    def set_account_status(self, payload):
        env = self._daemon_env()
        account = self._account(env, payload["account_id"], lock=True)
        values = {
            "status": payload["status"],
            "status_detail": payload.get("detail") or "",
            "status_until": dt_from_wire(_opt(payload.get("until"))) or False,
        }
        if account.status == "paused":
            # A paused account stays paused; its sync time still counts.
            values = {}
        synced = dt_from_wire(_opt(payload.get("synced_at")))
        if synced:
            values["last_sync_at"] = synced
            # A finished cycle answers a pending "Sync now".
            values["sync_requested"] = False
        if values:
            account.write(values)
        return True

    @api.model
    def store_token_cache(self, payload):
        """Compare and set with ``replaces``: a sign-in the person renewed while the daemon's
        refresh was in flight is kept (the row lock makes a concurrent write wait; one that
        committed after this snapshot is a serialization failure, retried in a new one)."""
        env = self._daemon_env()
        account = self._account(env, payload["account_id"], lock=True)
        replaces = _opt(payload.get("replaces"))
        if replaces is not None:
            env.cr.execute(
                "SELECT sealed_token_cache FROM m365_account WHERE id = %s", (account.id,)
            )
            if env.cr.fetchone()[0] != replaces:
                return False
        account.write({"sealed_token_cache": payload["sealed_token_cache"]})
        return True

    # --- leases ---------------------------------------------------------------------------------

    @api.model
    def lease_accounts(self, payload):
        """Claim up to ``limit`` free or expired, unpaused accounts in one statement.

        ``FOR UPDATE SKIP LOCKED``: two daemons claiming at once never wait for each other and
        never get the same row; each claim draws a new token from a sequence (only grows)."""
        env = self._daemon_env()
        env["m365.daemon.heartbeat"]._beat(payload["holder"])
        limit = int(payload.get("limit") or 0)
        if limit <= 0:
            return []
        now = self._now(payload)
        expires = now + timedelta(seconds=float(payload["ttl_seconds"]))
        holder = payload["holder"]
        self._fail_external_owners(env)
        env["m365.account"].flush_model()
        env.cr.execute(
            """
            UPDATE m365_account a
               SET lease_holder = %(holder)s,
                   lease_token = nextval('m365_account_lease_token_seq'),
                   lease_expires_at = %(expires)s,
                   lease_attempts = COALESCE(a.lease_attempts, 0) + 1,
                   write_uid = %(uid)s,
                   write_date = (now() at time zone 'UTC')
              FROM (
                    SELECT id FROM m365_account
                     WHERE status != 'paused'
                       AND (lease_holder IS NULL OR lease_expires_at <= %(now)s)
                       AND (user_id IS NULL OR user_id IN (SELECT id FROM res_users WHERE NOT share))
                     ORDER BY last_sync_at IS NOT NULL, last_sync_at, id
                     LIMIT %(limit)s
                       FOR UPDATE SKIP LOCKED
                   ) claimed
             WHERE a.id = claimed.id
         RETURNING a.id, a.lease_token
            """,
            {
                "holder": holder,
                "expires": expires,
                "now": now,
                "limit": limit,
                "uid": self.env.uid,
            },
        )
        rows = sorted(env.cr.fetchall(), key=lambda row: row[1])
        env["m365.account"].invalidate_model(
            ["lease_holder", "lease_token", "lease_expires_at", "lease_attempts"]
        )
        return [
            {
                "account_id": account_id,
                "token": token,
                "holder": holder,
                "expires_at": dt_to_wire(expires),
            }
            for account_id, token in rows
        ]

    @staticmethod
    def _fail_external_owners(env):
        """Accounts whose owner is not an internal user (it got there another way than the
        connect flow, or the user became a portal user) are never leased; their status says why."""
        accounts = env["m365.account"].search(
            [("user_id.share", "=", True), ("status", "not in", ["failed", "paused"])]
        )
        if accounts:
            accounts.write(
                {
                    "status": "failed",
                    "status_detail": env._(
                        "Not synced: the owner is not an internal user. Only internal users' "
                        "mailboxes are synced; an administrator should give the account to an "
                        "internal user or delete it."
                    ),
                    "status_until": False,
                }
            )

    def _check_lease(self, env, lease, account_id):
        """The token proves the claim (read under a row lock held to the end of the call): an
        expiry nobody acted on does not void it, a takeover (new token) or a release does."""
        account_id = int(account_id)
        env["m365.account"].flush_model()
        env.cr.execute(
            "SELECT lease_token, lease_holder FROM m365_account WHERE id = %s FOR UPDATE",
            (account_id,),
        )
        row = env.cr.fetchone()
        if row is None:
            raise _unknown(account_id)
        token, holder = row
        if int(lease["account_id"]) != account_id or holder is None or token != int(lease["token"]):
            raise UserError(
                f"M365:LeaseLost: the lease {lease['token']} on account {account_id} is no "
                f"longer held by {lease.get('holder')}."
            )

    @api.model
    def renew_lease(self, payload):
        env = self._daemon_env()
        lease = payload["lease"]
        self._check_lease(env, lease, lease["account_id"])
        expires = self._now(payload) + timedelta(seconds=float(payload["ttl_seconds"]))
        env["m365.account"].browse(int(lease["account_id"])).write({"lease_expires_at": expires})
        return {
            "account_id": int(lease["account_id"]),
            "token": int(lease["token"]),
            "holder": lease["holder"],
            "expires_at": dt_to_wire(expires),
        }

    @api.model
    def release_lease(self, payload):
        env = self._daemon_env()
        lease = payload["lease"]
        env["m365.account"].flush_model()
        env.cr.execute(
            "UPDATE m365_account SET lease_holder = NULL, lease_expires_at = NULL, "
            "lease_attempts = 0 WHERE id = %s AND lease_token = %s",
            (int(lease["account_id"]), int(lease["token"])),
        )
        env["m365.account"].invalidate_model(
            ["lease_holder", "lease_expires_at", "lease_attempts"]
        )
        return True

    # --- partners -------------------------------------------------------------------------------

    def _partners_by_emails(self, env, emails):
        """Normalised email -> partner; a person beats a company, then the lowest id.
        One indexed search for the whole set (``m365_email_normalized`` is the daemon's own
        normalisation, stored on the partner)."""
        wanted = {normalize_email(e) for e in emails if e and str(e).strip()}
        wanted.discard(None)
        if not wanted:
            return {}
        partners = env["res.partner"].search(
            [("m365_email_normalized", "in", list(wanted))], order="is_company, id"
        )
        found = {}
        for partner in partners:
            found.setdefault(partner.m365_email_normalized, partner)
        return found

    @api.model
    def find_partners_by_emails(self, payload):
        env = self._daemon_env()
        found = self._partners_by_emails(env, payload.get("emails") or [])
        return _none_to_false({k: self._partner_wire(p) for k, p in found.items()})

    def _companies_by_domains(self, env, domains):
        """Companies whose email domain or website domain is one of ``domains``; one search."""
        wanted = {normalize_domain(d) for d in domains if d and str(d).strip()}
        wanted.discard("")
        if not wanted:
            return {}
        companies = env["res.partner"].search(
            [
                ("is_company", "=", True),
                "|",
                ("m365_website_domain", "in", list(wanted)),
                ("m365_email_domain", "in", list(wanted)),
            ],
            order="id",
        )
        found = {}
        for company in companies:
            for key in (company.m365_website_domain, company.m365_email_domain):
                if key in wanted:
                    found.setdefault(key, company)
        return found

    @api.model
    def find_companies_by_domains(self, payload):
        env = self._daemon_env()
        found = self._companies_by_domains(env, payload.get("domains") or [])
        return _none_to_false({k: self._partner_wire(p) for k, p in found.items()})

    @api.model
    def get_partners(self, payload):
        env = self._daemon_env()
        ids = sorted({int(i) for i in payload.get("partner_ids") or [] if int(i) > 0})
        partners = env["res.partner"].with_context(active_test=False).browse(ids).exists()
        return _none_to_false({str(p.id): self._partner_wire(p) for p in partners})

    @api.model
    def create_partners(self, payload):
        """Each draft's partner, found or made. Two accounts' cycles meeting the same new
        sender call this at once: the drafts' keys are claimed first (`m365.partner.claim`),
        so the later call is run again by Odoo and finds what the earlier one made."""
        env = self._daemon_env()
        drafts = payload.get("drafts") or []
        env["m365.partner.claim"]._claim(key for draft in drafts for key in self._claim_keys(draft))
        made = {}
        order = sorted(range(len(drafts)), key=lambda i: not drafts[i].get("is_company"))
        for index in order:
            made[index] = self._create_one(env, drafts[index])
        return _none_to_false([self._partner_wire(made[i]) for i in range(len(drafts))])

    @staticmethod
    def _company_domain(draft):
        """The work domain a company draft is found by (and given as website when it has none)."""
        email, company_domain = _opt(draft.get("email")), _opt(draft.get("company_domain"))
        return (
            (normalize_domain(company_domain) if company_domain else None)
            or website_domain(_opt(draft.get("website")))
            or email_domain(normalize_email(email) if email else None)
        )

    def _claim_keys(self, draft):
        """What `_create_one` searches the draft's partner by: its normalised address, and a
        company's work domain."""
        email = normalize_email(_opt(draft.get("email")))
        keys = [f"email:{email}"] if email else []
        if draft.get("is_company") and (domain := self._company_domain(draft)):
            keys.append(f"domain:{domain}")
        return keys

    def _create_one(self, env, draft):
        Partner = env["res.partner"]
        email = _opt(draft.get("email"))
        website = _opt(draft.get("website"))
        company_domain = _opt(draft.get("company_domain"))
        if email:
            existing = self._partners_by_emails(env, [email])
            if existing:
                return next(iter(existing.values()))
        if draft.get("is_company"):
            domain = self._company_domain(draft)
            if domain:
                existing = self._companies_by_domains(env, [domain])
                if existing:
                    return existing[domain]
            if not website and domain:
                website = domain  # so the company is found by its domain next time
            return Partner.create(
                {"name": draft["name"], "email": email, "is_company": True, "website": website}
            )
        parent = Partner
        if company_domain:
            parent = self._companies_by_domains(env, [company_domain]).get(
                normalize_domain(company_domain), Partner
            )
        return Partner.create(
            {
                "name": draft["name"],
                "email": email,
                "website": website,
                "parent_id": parent.id or False,
            }
        )

    # --- mail -----------------------------------------------------------------------------------

    @api.model
    def get_cursor(self, payload):
        env = self._daemon_env()
        folder = env["m365.account.folder"].search(
            [
                ("account_id", "=", int(payload["account_id"])),
                ("folder_id", "=", payload["folder_id"]),
            ],
            limit=1,
        )
        if not folder or not folder.cursor_link:
            return False
        return {
            "link": folder.cursor_link,
            "kind": folder.cursor_kind,
            "full_round": folder.cursor_kind == "next" and folder.round_open,
        }

    @api.model
    def store_mail_page(self, payload):
        """Lease check, removals (this folder only), moves, upserts, participants, attachments,
        skips and the cursor: all in this one RPC transaction, so the cursor never runs ahead
        of the data, and a failure anywhere leaves everything as it was.

        Removals go first, so an id named in both lists survives (losing mail is worse than
        keeping a deleted message until the next round). Queries are bounded per page, not per
        message: links, messages and threads are looked up with one ``in`` search each, and new
        rows are created in batches."""
        env = self._daemon_env()
        page = payload["page"]
        lease = _opt(payload.get("lease"))
        account_id = int(page["account_id"])
        folder_id = page["folder_id"]
        if lease:
            self._check_lease(env, lease, account_id)
        else:
            self._account(env, account_id, lock=True)
        writer = _PageWriter(env, account_id, folder_id)
        mark = _opt(page.get("round"))
        writer.open_round(mark)
        writer.remove(page.get("removed_ids") or [])
        writer.move(page.get("moved") or {})
        writer.upsert(page.get("upserts") or [])
        writer.mark_listed(mark)
        writer.store_cursor(page["cursor"], page.get("skipped") or {}, mark)
        writer.summarise_threads()
        return writer.result()

    @api.model
    def reset_folder(self, payload):
        """Forget the folder's cursor (after a 410), keeping its messages; the round it was
        in is abandoned (the next page starts a new one)."""
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        env["m365.account.folder"].search(
            [("account_id", "=", account.id), ("folder_id", "=", payload["folder_id"])]
        ).write({"cursor_link": False, "cursor_kind": False, "round_open": False})
        return True

    @api.model
    def unlisted_in_round(self, payload):
        """Graph ids linked to the folder that no stored page of its open full round listed,
        among messages received within the round's window (see the gateway's docstring)."""
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        env["m365.mail.message.link"].flush_model()
        env["m365.account.folder"].flush_model()
        env.cr.execute(
            """
            SELECT l.graph_id FROM m365_mail_message_link l
              JOIN m365_account_folder f
                ON f.account_id = l.account_id AND f.folder_id = l.folder_id
              JOIN m365_mail_message m ON m.id = l.message_id
             WHERE l.account_id = %s AND l.folder_id = %s AND f.round_open
               AND COALESCE(l.round_seen, 0) < COALESCE(f.round_number, 0)
               AND m.received_at IS NOT NULL
               AND (f.round_since IS NULL OR m.received_at >= f.round_since)
             ORDER BY l.graph_id
            """,
            (account.id, payload["folder_id"]),
        )
        return [row[0] for row in env.cr.fetchall()]

    @api.model
    def store_mail_folders(self, payload):
        """The tree the daemon's cycle listed (issue #14): rows upserted by Graph id (a folder
        renamed or moved keeps its row and its tick), folders gone deleted, ``synced`` set."""
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        synced = set(payload.get("synced") or [])
        folders = [f for f in payload.get("folders") or [] if f.get("graph_id")]
        existing = {f.graph_id: f for f in account.mail_folder_ids}
        listed = {f["graph_id"] for f in folders}
        account.mail_folder_ids.filtered(lambda f: f.graph_id not in listed).unlink()
        creates = []
        for folder in folders:
            path = _opt(folder.get("path")) or _opt(folder.get("display_name")) or ""
            vals = {
                "parent_graph_id": _opt(folder.get("parent_id")) or False,
                "name": _opt(folder.get("display_name")) or folder["graph_id"],
                "path": path,
                "path_key": path.casefold(),
                "depth": path.count("/"),
                "total_items": folder.get("total_items") or 0,
                "unread_items": folder.get("unread_items") or 0,
                "is_search": bool(folder.get("is_search")),
                "synced": folder["graph_id"] in synced,
            }
            row = existing.get(folder["graph_id"])
            if row is None:
                creates.append({"account_id": account.id, "graph_id": folder["graph_id"], **vals})
            elif any(row[k] != v for k, v in vals.items()):
                row.write(vals)
        if creates:
            env["m365.mail.folder"].create(creates)
        return True

    @api.model
    def list_mail_folders(self, payload):
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        return [
            {
                "folder": {
                    "graph_id": f.graph_id,
                    "display_name": f.name or "",
                    "parent_id": f.parent_graph_id or None,
                    "path": f.path or "",
                    "total_items": f.total_items,
                    "unread_items": f.unread_items,
                    "is_search": f.is_search,
                },
                "synced": f.synced,
            }
            for f in account.mail_folder_ids.sorted(lambda f: (f.path_key or "", f.id))
        ]

    @api.model
    def record_sync_run(self, payload):
        env = self._daemon_env()
        run = payload["run"]
        account = self._account(env, run["account_id"])
        env["m365.sync.run"].create(
            {
                "account_id": account.id,
                "started_at": dt_from_wire(run["started_at"]),
                "finished_at": dt_from_wire(_opt(run.get("finished_at"))) or False,
                "pages": run.get("pages") or 0,
                "imported": run.get("imported") or 0,
                "updated": run.get("updated") or 0,
                "removed": run.get("removed") or 0,
                "skipped": json_dumps(_opt(run.get("skipped")) or {}),
                "error": _opt(run.get("error")) or False,
                "calendar_figures": json_dumps(_opt(run.get("calendar")) or {}),
                "outbox_figures": json_dumps(_opt(run.get("outbox")) or {}),
                "parts": json_dumps(_opt(run.get("parts")) or {}),
                "graph_requests": run.get("graph_requests") or 0,
                "token_requests": run.get("token_requests") or 0,
            }
        )
        return True

    @api.model
    def last_sync_run(self, payload):
        env = self._daemon_env()
        run = env["m365.sync.run"].search(
            [("account_id", "=", int(payload["account_id"]))],
            order="started_at desc, id desc",
            limit=1,
        )
        if not run:
            return False
        return _none_to_false(
            {
                "account_id": run.account_id.id,
                "started_at": dt_to_wire(run.started_at),
                "finished_at": dt_to_wire(run.finished_at),
                "pages": run.pages,
                "imported": run.imported,
                "updated": run.updated,
                "removed": run.removed,
                "skipped": json_loads(run.skipped),
                "error": run.error or None,
                "calendar": json_loads(run.calendar_figures),
                "outbox": json_loads(run.outbox_figures),
                "parts": json_loads(run.parts),
                "graph_requests": run.graph_requests,
                "token_requests": run.token_requests,
            }
        )

    # --- reading back ---------------------------------------------------------------------------

    @api.model
    def count_messages(self, payload=None):
        env = self._daemon_env()
        account_id = _opt((payload or {}).get("account_id"))
        env["m365.mail.message.link"].flush_model()
        if account_id is None:
            return env["m365.mail.message"].search_count([])
        env.cr.execute(
            "SELECT COUNT(DISTINCT message_id) FROM m365_mail_message_link WHERE account_id = %s",
            (int(account_id),),
        )
        return env.cr.fetchone()[0]

    @api.model
    def message_ids_for_account(self, payload):
        env = self._daemon_env()
        env["m365.mail.message.link"].flush_model()
        env["m365.mail.message"].flush_model(["internet_message_id"])
        env.cr.execute(
            "SELECT l.graph_id, m.internet_message_id FROM m365_mail_message_link l "
            "JOIN m365_mail_message m ON m.id = l.message_id WHERE l.account_id = %s",
            (int(payload["account_id"]),),
        )
        return {graph_id: imid or False for graph_id, imid in env.cr.fetchall()}

    @api.model
    def threads_for_partner(self, payload):
        env = self._daemon_env()
        partner = env["res.partner"].browse(int(payload["partner_id"])).exists()
        if not partner:
            return []
        partners = partner | partner.with_context(active_test=False).child_ids
        threads = env["m365.mail.thread"].search([("partner_ids", "in", partners.ids)])
        summaries = [
            {
                "conversation_id": t.conversation_id or "",
                "subject": t.subject or "",
                "message_count": t.message_count,
                "last_at": dt_to_wire(t.last_message_at),
                "participants": (t.participants or "").split(),
                "partner_ids": sorted(t.partner_ids.ids),
            }
            for t in threads
        ]
        epoch = "0"
        summaries.sort(key=lambda s: s["conversation_id"])
        summaries.sort(key=lambda s: s["last_at"] or epoch, reverse=True)
        return _none_to_false(summaries)

    @api.model
    def mail_counts_by_partner(self, payload=None):
        """[[partner, threads, messages], ...] most messages first; a company counts its
        contacts' mail too. One aggregate query, then one read of the partners."""
        env = self._daemon_env()
        for model in ("m365.mail.participant", "m365.mail.message", "res.partner"):
            env[model].flush_model()
        env.cr.execute(
            """
            WITH linked (pid, message_id) AS (
                SELECT partner_id, message_id FROM m365_mail_participant
                 WHERE partner_id IS NOT NULL
                UNION
                SELECT company_partner_id, message_id FROM m365_mail_participant
                 WHERE company_partner_id IS NOT NULL
                UNION
                SELECT c.parent_id, p.message_id
                  FROM m365_mail_participant p JOIN res_partner c ON c.id = p.partner_id
                 WHERE c.parent_id IS NOT NULL
            )
            SELECT linked.pid, COUNT(DISTINCT COALESCE(m.thread_id, -m.id)),
                   COUNT(DISTINCT m.id) AS messages
              FROM linked JOIN m365_mail_message m ON m.id = linked.message_id
             GROUP BY linked.pid
             ORDER BY messages DESC, linked.pid
            """
        )
        rows = env.cr.fetchall()
        partners = env["res.partner"].with_context(active_test=False).browse(
            [row[0] for row in rows]
        )
        by_id = {p.id: p for p in partners.exists()}
        return _none_to_false(
            [
                [self._partner_wire(by_id[pid]), threads, messages]
                for pid, threads, messages in rows
                if pid in by_id
            ]
        )

    # --- connecting from the CRM ----------------------------------------------------------------

    @api.model
    def publish_daemon_info(self, payload):
        env = self._daemon_env()
        info = dict(payload.get("info") or {})
        jwks = info.get("jwks") or {}
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise UserError("M365:Conflict: daemon info needs a JWKS ({'keys': [...]}).")
        if any("d" in key for key in jwks["keys"]):
            raise UserError("M365:Conflict: the published JWKS must hold public keys only.")
        params = env["ir.config_parameter"]
        params.set_param(DAEMON_INFO_KEY, json_dumps(info))
        params.set_param(DAEMON_SEEN_KEY, fields.Datetime.to_string(fields.Datetime.now()))
        return True

    @api.model
    def pending_connects(self, payload=None):
        env = self._daemon_env()
        requests = env["m365.connect.request"].search([("state", "=", "pending")], order="id")
        external = requests.filtered(lambda r: not r.user_id._is_internal())
        external._refuse_external_owner()
        return [
            {"id": r.id, "owner": r.user_id.login or "", "sealed": r.sealed or ""}
            for r in requests - external  # only internal users' requests are ever redeemed
        ]

    @api.model
    def finish_connect(self, payload):
        env = self._daemon_env()
        request = env["m365.connect.request"].browse(int(payload["connect_id"])).exists()
        if not request:
            raise UserError(f"M365:Conflict: no connect request {payload['connect_id']}.")
        account_id = _opt(payload.get("account_id"))
        error = _opt(payload.get("error"))
        values = {"sealed": False}  # redeemed or refused: the code is spent either way
        if error:
            values |= {"state": "failed", "error": error}
        else:
            values |= {"state": "done", "error": False}
        if account_id:
            values["account_id"] = self._account(env, account_id).id
        request.write(values)
        return True


# What each privacy level withholds from what an account contributes to a message.
WITHHELD = {
    "everything": (),
    "subject": ("body_html", "body_preview", "attachments", "headers"),
    "metadata": ("subject", "body_html", "body_preview", "attachments", "headers"),
}


def _with_dedupe_key(item):
    """The item with its message's normalised sender and content fingerprint. The daemon
    sends the fingerprint (taken before privacy, m365sync.sync.mail.content_fingerprint); an
    older daemon does not, and one is made here from what it sent."""
    msg = item["message"]
    sender = _opt(msg.get("sender")) or {}
    sender_key = normalize_email(sender.get("address")) or ""
    fingerprint = _opt(msg.get("fingerprint"))
    if not fingerprint:
        body = html2plaintext(msg.get("body_html") or "") if _opt(msg.get("body_html")) else ""
        text = body or _opt(msg.get("body_preview")) or ""
        content = [sender_key, " ".join((_opt(msg.get("subject")) or "").split()), " ".join(text.split())]
        fingerprint = "addon:" + hashlib.sha256(json.dumps(content).encode()).hexdigest()
    return dict(item, message=dict(msg, sender_key=sender_key, fingerprint=fingerprint))


class _PageWriter:
    """The writes of one ``store_mail_page`` call, batched. Mirrors the embedded store's
    sequential semantics (m365sync.crm.sqlite) while touching the database per page."""

    def __init__(self, env, account_id, folder_id):
        self.env = env
        self.account_id = account_id
        self.folder_id = folder_id
        self.Link = env["m365.mail.message.link"]
        self.Message = env["m365.mail.message"]
        self.Thread = env["m365.mail.thread"]
        self.withheld = WITHHELD.get(env["m365.account"].browse(account_id).privacy, ())
        self.created = self.updated = self.linked = self.removed = 0
        self.maybe_orphans = set()
        self.round_number = 0

    def result(self):
        return {
            "created": self.created,
            "updated": self.updated,
            "linked": self.linked,
            "removed": self.removed,
        }

    # full rounds ---------------------------------------------------------------------------

    def _folder(self, folder_id=None):
        return self.env["m365.account.folder"].search(
            [("account_id", "=", self.account_id), ("folder_id", "=", folder_id or self.folder_id)],
            limit=1,
        )

    def open_round(self, mark):
        """The folder's current full round, after opening a new one if the page starts it."""
        folder = self._folder()
        self.round_number = folder.round_number if folder else 0
        if not mark or not mark.get("starts"):
            return
        self.round_number += 1
        values = {
            "round_number": self.round_number,
            "round_open": True,
            "round_since": dt_from_wire(_opt(mark.get("since"))) or False,
        }
        if folder:
            folder.write(values)
        else:
            self.env["m365.account.folder"].create(
                values | {"account_id": self.account_id, "folder_id": self.folder_id}
            )

    def mark_listed(self, mark):
        """The account's links to this folder that the page lists are seen by the round."""
        listed = list(set((mark or {}).get("listed_ids") or []))
        if not listed:
            return
        self.Link.search(
            [
                ("account_id", "=", self.account_id),
                ("folder_id", "=", self.folder_id),
                ("graph_id", "in", listed),
            ]
        ).write({"round_seen": self.round_number})

    # removals and moves --------------------------------------------------------------------

    def remove(self, graph_ids):
        if not graph_ids:
            return
        links = self.Link.search(
            [
                ("account_id", "=", self.account_id),
                ("folder_id", "=", self.folder_id),
                ("graph_id", "in", list(set(graph_ids))),
            ]
        )
        self.removed += len(links)
        self.maybe_orphans.update(links.message_id.ids)
        links.unlink()
        self._drop_orphans()

    def move(self, moved):
        if not moved:
            return
        links = self.Link.search(
            [
                ("account_id", "=", self.account_id),
                ("folder_id", "=", self.folder_id),
                ("graph_id", "in", list(moved)),
            ]
        )
        rounds = {
            f.folder_id: f.round_number
            for f in self.env["m365.account.folder"].search(
                [("account_id", "=", self.account_id), ("folder_id", "in", list(set(moved.values())))]
            )
        }
        for link in links:
            target = moved[link.graph_id]
            link.write({"folder_id": target, "round_seen": rounds.get(target, 0)})
        self.linked += len(links)

    def _drop_orphans(self):
        """A message lives as long as one account's folder holds it; its thread likewise."""
        if not self.maybe_orphans:
            return
        self.Link.flush_model()
        self.env.cr.execute(
            "SELECT id FROM m365_mail_message m WHERE id IN %s AND NOT EXISTS "
            "(SELECT 1 FROM m365_mail_message_link l WHERE l.message_id = m.id)",
            (tuple(self.maybe_orphans),),
        )
        orphans = self.Message.browse([row[0] for row in self.env.cr.fetchall()])
        self.maybe_orphans = set()
        threads = orphans.thread_id
        orphans.unlink()
        if threads:
            self.Thread.search(
                [("id", "in", threads.ids), ("message_ids", "=", False)]
            ).unlink()

    # upserts -------------------------------------------------------------------------------

    def upsert(self, items):
        """Upsert by (account, immutable id), and across folders and accounts by
        (internetMessageId, sender, fingerprint): the sender controls the Message-ID, so only
        what is provably one message merges. A copy never blanks what another account
        contributed: what this account's privacy withholds keeps its stored value."""
        if not items:
            return
        items = [_with_dedupe_key(item) for item in items]
        graph_ids = list({item["message"]["graph_id"] for item in items})
        imids = list(
            {
                item["message"].get("internet_message_id")
                for item in items
                if _opt(item["message"].get("internet_message_id"))
            }
        )
        self._lock_keys(imids, items)
        links = {
            link.graph_id: link
            for link in self.Link.search(
                [("account_id", "=", self.account_id), ("graph_id", "in", graph_ids)]
            )
        }
        candidates = self.Message.search([("internet_message_id", "in", imids)]) if imids else self.Message
        by_key, legacy = {}, {}
        for m in candidates:
            if m.fingerprint:
                by_key[(m.internet_message_id, m.sender_key or "", m.fingerprint)] = m.id
            else:  # stored before fingerprints: the first copy from the same sender adopts it
                legacy.setdefault((m.internet_message_id, normalize_email(m.from_address) or ""), m.id)
        holders = {}  # message id -> {(account id, graph id)} of every link holding it
        held = candidates | self.Message.browse([link.message_id.id for link in links.values()])
        for link in self.Link.search([("message_id", "in", held.ids)]) if held else []:
            holders.setdefault(link.message_id.id, set()).add((link.account_id.id, link.graph_id))

        # Plan sequentially (as the embedded store writes), touching no rows yet. A target is
        # an existing message id (int) or a new message's key ("new", n).
        new_content = {}  # key -> item (last content wins)
        new_by_key = {}
        current_hash = {}  # target -> fingerprint after the items seen so far
        existing_content = {}  # message id -> item to write
        link_plan = {}  # graph id -> [link record or None, target, folder, change_key]
        for item in items:
            msg = item["message"]
            gid, imid = msg["graph_id"], _opt(msg.get("internet_message_id"))
            key = (imid, msg["sender_key"], msg["fingerprint"]) if imid else None
            planned = link_plan.get(gid)
            link = links.get(gid)
            target = None
            if key and key in new_by_key:
                target = new_by_key[key]
            elif key and key in by_key:
                target = by_key[key]
            elif key and (imid, msg["sender_key"]) in legacy:
                target = legacy.pop((imid, msg["sender_key"]))
                current_hash[target] = None  # store its key even if nothing else changed
            if target is None:
                previous = planned[1] if planned else (link.message_id.id if link else None)
                if isinstance(previous, tuple) or (
                    previous is not None
                    and holders.get(previous, set()) <= {(self.account_id, gid)}
                ):
                    # The same immutable id with new content, held by this link alone:
                    # rewritten in place. Held by others too, it becomes its own message.
                    target = previous
            if isinstance(target, int) and self.withheld and any(
                account != self.account_id for account, _gid in holders.get(target, ())
            ):
                item = self._keep_others(item, self.Message.browse(target))
                msg = item["message"]
            fingerprint = _fingerprint(msg, item.get("participants") or [])
            if target is None:
                target = ("new", len(new_content))
                new_content[target] = item
                current_hash[target] = fingerprint
                self.created += 1
            else:
                if target not in current_hash:  # an existing message, first seen here
                    current_hash[target] = self.Message.browse(target).content_hash
                if current_hash[target] != fingerprint:
                    current_hash[target] = fingerprint
                    self.updated += 1
                    if isinstance(target, tuple):
                        new_content[target] = item
                    else:
                        existing_content[target] = item
            if key:
                (new_by_key if isinstance(target, tuple) else by_key)[key] = target
            if planned is None:
                planned = [link, link.message_id.id if link else None, None, None]
                if link:
                    planned[2], planned[3] = link.folder_id, link.change_key or None
                link_plan[gid] = planned
            self._plan_link(planned, target, _opt(msg.get("change_key")))

        ids = self._create_messages(new_content, current_hash)
        self._update_messages(existing_content, current_hash)
        self._write_links(link_plan, ids)
        self._drop_orphans()

    def _keep_others(self, item, message):
        """The item with what this account withholds taken from the stored message."""
        kept = {
            "subject": message.subject or None,
            "body_html": str(message.body_html) if message.body_html else None,
            "body_preview": message.body_preview or None,
            "headers": json_loads(message.headers) or {},
            "attachments": [
                {"name": a.name, "size": a.size, "content_type": a.content_type}
                for a in message.attachment_ids
            ],
        }
        msg = dict(item["message"], **{name: kept[name] for name in self.withheld})
        return dict(item, message=msg)

    def _lock_keys(self, imids, items):
        """Serialise concurrent pages that share an internetMessageId or a conversation (two
        accounts holding one message): transaction-scoped advisory locks, taken in one sorted
        order so two pages cannot deadlock."""
        keys = {f"imid:{i}" for i in imids}
        keys |= {
            f"conv:{item['message'].get('conversation_id')}"
            for item in items
            if _opt(item["message"].get("conversation_id"))
        }
        if keys:
            self.env.cr.execute(
                "SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(%s::text[]) AS k",
                (sorted(keys),),
            )

    def _plan_link(self, planned, target, change_key):
        """Create the (account, immutable id) link, or follow the item to its new folder."""
        _link, old_target, old_folder, old_key = planned
        if old_target is None:
            self.linked += 1
        elif (old_target, old_folder, old_key) != (target, self.folder_id, change_key):
            if old_folder != self.folder_id:
                self.linked += 1
            if old_target != target and not isinstance(old_target, tuple):
                self.maybe_orphans.add(old_target)
        planned[1], planned[2], planned[3] = target, self.folder_id, change_key

    def _threads_for(self, conversation_ids):
        """conversation id -> thread, creating the missing ones in one batch.

        Two accounts may store the same new conversation at the same moment, in parallel
        transactions: neither snapshot sees the thread the other is creating, so ``search``
        finds none in both. The missing threads are inserted with ``ON CONFLICT
        (conversation_id) DO NOTHING``: the second insert waits for the first transaction;
        if that one commits, PostgreSQL answers a transaction that cannot see the row (Odoo
        runs REPEATABLE READ) with a serialization failure, which Odoo's RPC layer
        (``odoo.service.model.retrying``) answers by running the call again on a fresh
        snapshot, where the thread is found. A plain insert (``create``) failed instead with
        a unique violation, which is not retried, and the page was lost for the cycle. An
        advisory lock would not do: the snapshot is taken by the call's first query, long
        before this point, so waiting on a lock here still leaves the thread invisible."""
        wanted = {c for c in conversation_ids if c}
        if not wanted:
            return {}
        found = {t.conversation_id: t for t in self.Thread.search([("conversation_id", "in", list(wanted))])}
        missing = sorted(wanted - set(found))
        if missing:
            unique = SQL("ON CONFLICT (conversation_id) DO NOTHING")
            ids = self._insert(self.Thread, ("conversation_id",), [(c,) for c in missing], on_conflict=unique)
            for name in self.SUMMARY:  # what create computes: the summary of no message yet
                self.env.add_to_compute(self.Thread._fields[name], self.Thread.browse(ids))
            found.update(zip(missing, self.Thread.browse(ids), strict=True))
        return found

    @staticmethod
    def _values(msg, fingerprint):
        sender = _opt(msg.get("sender")) or {}
        return {
            "internet_message_id": _opt(msg.get("internet_message_id")) or False,
            "conversation_id": _opt(msg.get("conversation_id")) or False,
            "subject": _opt(msg.get("subject")) or False,
            "from_address": sender.get("address") or False,
            "from_name": sender.get("name") or False,
            "received_at": dt_from_wire(_opt(msg.get("received_at"))) or False,
            "sent_at": dt_from_wire(_opt(msg.get("sent_at"))) or False,
            "body_html": sanitize_body(_opt(msg.get("body_html"))) or False,
            "body_preview": _opt(msg.get("body_preview")) or False,
            "is_draft": bool(msg.get("is_draft")),
            "has_attachments": bool(msg.get("has_attachments")),
            "headers": json_dumps(_opt(msg.get("headers")) or {}),
            "content_hash": fingerprint,
            "sender_key": msg.get("sender_key") or False,
            "fingerprint": msg.get("fingerprint") or False,
        }

    # Columns of a new message row, in `_insert` order (`_values` and the thread; ``date`` is
    # the stored compute `m365.mail.message._compute_date`: received, else sent).
    MESSAGE_COLUMNS = (
        "internet_message_id",
        "conversation_id",
        "subject",
        "from_address",
        "from_name",
        "received_at",
        "sent_at",
        "body_html",
        "body_preview",
        "is_draft",
        "has_attachments",
        "headers",
        "content_hash",
        "sender_key",
        "fingerprint",
        "thread_id",
        "date",
        "show_images",
    )

    def _create_messages(self, new_content, current_hash):
        """New messages as plain rows (`_insert`): each with its conversation's thread (found
        or created in one batch), or a thread of its own when it has no conversation id; the
        threads' summaries are marked for `summarise_threads`."""
        if not new_content:
            return {}
        keys = list(new_content)
        threads = self._threads_for(
            _opt(new_content[k]["message"].get("conversation_id")) for k in keys
        )
        lonely = [k for k in keys if not _opt(new_content[k]["message"].get("conversation_id"))]
        own = dict(zip(lonely, self._insert(self.Thread, (), [() for _ in lonely]), strict=True))
        rows, thread_ids = [], set()
        for key in keys:
            item = new_content[key]
            msg = item["message"]
            values = self._values(msg, current_hash[key])  # the planned item's fingerprint
            conversation = _opt(msg.get("conversation_id"))
            values["thread_id"] = threads[conversation].id if conversation else own[key]
            values["date"] = values["received_at"] or values["sent_at"]
            values["show_images"] = False
            thread_ids.add(values["thread_id"])
            rows.append(
                tuple(
                    None if values[c] is False and c not in self.BOOLEAN_COLUMNS else values[c]
                    for c in self.MESSAGE_COLUMNS
                )
            )
        # The same new message may reach two accounts' pages at the same moment (a mail
        # between two connected colleagues): as for threads (`_threads_for`), a conflict on
        # the dedupe key with the other transaction's row is a serialization failure, which
        # Odoo retries on a fresh snapshot where the message is found, never a unique
        # violation that loses the page. A conflict with a row this snapshot sees cannot
        # happen (the key was looked up): `_insert` says so if it did.
        dedupe = SQL(
            "ON CONFLICT (internet_message_id, sender_key, fingerprint) WHERE "
            "internet_message_id IS NOT NULL AND fingerprint IS NOT NULL DO NOTHING"
        )
        inserted = self._insert(self.Message, self.MESSAGE_COLUMNS, rows, on_conflict=dedupe)
        ids = dict(zip(keys, inserted, strict=True))
        touched = self.Thread.browse(sorted(thread_ids))
        touched.invalidate_recordset(["message_ids"], flush=False)
        for name in self.SUMMARY:
            self.env.add_to_compute(self.Thread._fields[name], touched)
        self._replace_parts({ids[k]: new_content[k] for k in keys}, fresh=True)
        return ids

    BOOLEAN_COLUMNS = ("is_draft", "has_attachments", "show_images")

    def _update_messages(self, existing_content, current_hash):
        """Overwrite with exactly what the sync gives (None stays None). The thread is kept
        once set: one message must not hop between threads."""
        if not existing_content:
            return
        messages = self.Message.browse(list(existing_content))
        threads = self._threads_for(
            _opt(existing_content[m.id]["message"].get("conversation_id"))
            for m in messages
            if not m.thread_id
        )
        for message in messages:
            msg = existing_content[message.id]["message"]
            values = self._values(msg, current_hash[message.id])
            if not message.thread_id:
                conversation = _opt(msg.get("conversation_id"))
                values["thread_id"] = threads[conversation].id if conversation else False
            message.write(values)
        self._replace_parts(existing_content, fresh=False)

    def _replace_parts(self, by_message, fresh):
        """Participants and attachment metadata are replaced whole with the message, as
        plain rows in one statement each (`_insert`); the threads' summaries that depend on
        participants are marked for recomputation."""
        Participant = self.env["m365.mail.participant"]
        Attachment = self.env["m365.mail.attachment"]
        ids = list(by_message)
        if not fresh:
            for model in (Participant, Attachment):
                self.env.cr.execute(
                    SQL(
                        "DELETE FROM %s WHERE message_id IN %s",
                        SQL.identifier(model._table),
                        tuple(ids),
                    )
                )
        people, files = [], []
        for message_id, item in by_message.items():
            for p in item.get("participants") or []:
                people.append(
                    (
                        message_id,
                        p["role"],
                        normalize_email(p["address"]) or p["address"],
                        p.get("name") or None,
                        _opt(p.get("partner_id")) or None,
                        _opt(p.get("company_id")) or None,
                    )
                )
            for a in _opt(item["message"].get("attachments")) or []:
                files.append(
                    (
                        message_id,
                        a.get("name") or "",
                        a.get("size") or 0,
                        a.get("content_type") or "",
                    )
                )
        self._insert(
            Participant,
            ("message_id", "role", "address", "name", "partner_id", "company_partner_id"),
            people,
        )
        self._insert(Attachment, ("message_id", "name", "size", "content_type"), files)
        messages = self.Message.browse(ids)
        messages.invalidate_recordset(["participant_ids", "attachment_ids"], flush=False)
        messages.modified(["participant_ids"])

    def _insert(self, model, columns, rows, on_conflict=None):
        """``rows`` (tuples in ``columns`` order) inserted as plain rows, a thousand per
        statement, with the audit columns the ORM would set; their ids, in order.

        Why not ``create``: the ORM's per-record work (defaults, caches, inverse fields) was
        most of the time of storing a page, for rows that need none of it (no defaults, no
        computed fields of their own). The caller invalidates what it cached and marks what
        depends on them (``modified``). ``on_conflict``: an ``ON CONFLICT ... DO NOTHING``
        clause; a row it skipped is an error (the ids would no longer match the rows)."""
        ids = []
        if not rows:
            return ids
        uid, now = self.env.uid, self.env.cr.now()
        names = SQL(", ").join(
            SQL.identifier(c) for c in (*columns, "create_uid", "create_date", "write_uid", "write_date")
        )
        for start in range(0, len(rows), 1000):
            values = SQL(", ").join(
                SQL("%s", (*row, uid, now, uid, now)) for row in rows[start : start + 1000]
            )
            self.env.cr.execute(
                SQL(
                    "INSERT INTO %s (%s) VALUES %s %s RETURNING id",
                    SQL.identifier(model._table),
                    names,
                    values,
                    on_conflict or SQL(),
                )
            )
            ids.extend(row[0] for row in self.env.cr.fetchall())
        if len(ids) != len(rows):
            raise UserError(
                self.env._(
                    "%(count)s rows of %(model)s were already stored.",
                    count=len(rows) - len(ids),
                    model=model._name,
                )
            )
        return ids

    def _write_links(self, link_plan, new_ids):
        def real(target):
            return new_ids[target] if isinstance(target, tuple) else target

        creates = []
        for graph_id, (link, target, folder, change_key) in link_plan.items():
            target = real(target)
            if link is None:
                creates.append(
                    (
                        target,
                        self.account_id,
                        folder,
                        graph_id,
                        change_key or None,
                        self.round_number,
                    )
                )
            elif (link.message_id.id, link.folder_id, link.change_key or None) != (
                target,
                folder,
                change_key,
            ):
                values = {"message_id": target, "folder_id": folder, "change_key": change_key or False}
                if link.folder_id != folder:  # entering the folder: seen by its current round
                    values["round_seen"] = self.round_number
                link.write(values)
        if creates:
            # Plain rows (`_insert`): nothing is computed from links.
            self._insert(
                self.Link,
                ("message_id", "account_id", "folder_id", "graph_id", "change_key", "round_seen"),
                creates,
            )
            self.Message.browse({row[0] for row in creates}).invalidate_recordset(
                ["link_ids"], flush=False
            )

    # thread summaries ----------------------------------------------------------------------

    SUMMARY = ("subject", "last_message_at", "message_count", "participants", "partner_ids")

    def summarise_threads(self):
        """The stored summaries of every thread the page touched, in three statements.

        The same values as ``m365.mail.thread._compute_summary`` (which still serves every
        other change): that compute reads each thread's messages and participants and writes
        its contacts many2many one thread at a time, which was a third of a page's time. The
        threads are the ones the page's writes marked for recomputation; they are unmarked
        here, so the ORM does not compute them again."""
        fields_ = [self.Thread._fields[name] for name in self.SUMMARY]
        marked = self.Thread.browse()
        for field in fields_:
            marked |= self.env.records_to_compute(field)
        if not marked:
            return
        # What the statements below read, as the ORM holds it (stored dates, threads).
        self.Message.flush_model()
        self.env["m365.mail.participant"].flush_model()
        threads = marked.exists()
        if threads:
            ids = tuple(threads.ids)
            cr = self.env.cr
            cr.execute(
                SQL(
                    """
                    UPDATE m365_mail_thread t
                       SET subject = (
                               SELECT m.subject FROM m365_mail_message m
                                WHERE m.thread_id = t.id AND COALESCE(m.subject, '') <> ''
                                ORDER BY m.date IS NULL, m.date, m.id LIMIT 1),
                           last_message_at = (
                               SELECT max(m.date) FROM m365_mail_message m
                                WHERE m.thread_id = t.id),
                           message_count = (
                               SELECT count(*) FROM m365_mail_message m
                                WHERE m.thread_id = t.id),
                           participants = (
                               SELECT NULLIF(string_agg(a.address, E'\n' ORDER BY a.address), '')
                                 FROM (SELECT DISTINCT p.address COLLATE "C" AS address
                                         FROM m365_mail_participant p
                                         JOIN m365_mail_message m ON m.id = p.message_id
                                        WHERE m.thread_id = t.id) a),
                           write_uid = %s,
                           write_date = %s
                     WHERE t.id IN %s
                    """,
                    self.env.uid,
                    cr.now(),
                    ids,
                )
            )
            cr.execute(SQL("DELETE FROM m365_mail_thread_partner_rel WHERE thread_id IN %s", ids))
            cr.execute(
                SQL(
                    """
                    INSERT INTO m365_mail_thread_partner_rel (thread_id, partner_id)
                    SELECT DISTINCT m.thread_id, x.partner_id
                      FROM m365_mail_message m
                      JOIN m365_mail_participant p ON p.message_id = m.id
                     CROSS JOIN LATERAL (VALUES (p.partner_id), (p.company_partner_id))
                           AS x (partner_id)
                     WHERE m.thread_id IN %s AND x.partner_id IS NOT NULL
                    """,
                    ids,
                )
            )
        for field in fields_:
            self.env.remove_to_compute(field, marked)
        marked.invalidate_recordset(self.SUMMARY, flush=False)

    # cursor --------------------------------------------------------------------------------

    def store_cursor(self, cursor, skipped, mark=None):
        """The cursor, the round's state, and the page's skips: a full round's first page
        restarts the folder's tally (one round's count, however many rounds ran), other pages
        add theirs unless the page is a replay (same cursor as stored)."""
        Folder = self.env["m365.account.folder"]
        folder = self._folder()
        starts = bool(mark and mark.get("starts"))
        tally = json_loads(folder.skipped) if folder and not starts else {}
        if starts or not folder or folder.cursor_link != cursor["link"]:
            for reason, count in (skipped or {}).items():
                tally[reason] = tally.get(reason, 0) + int(count)
        values = {
            "cursor_link": cursor["link"],
            "cursor_kind": cursor["kind"],
            "skipped": json_dumps(tally),
            "round_open": bool(mark) and not mark.get("completes"),
        }
        if folder:
            folder.write(values)
        else:
            Folder.create(
                values | {"account_id": self.account_id, "folder_id": self.folder_id}
            )


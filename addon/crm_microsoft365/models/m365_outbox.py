"""The outbox: mail a user queued for sending through their own Outlook (Compose Email).

The daemon reads queued rows through ``m365.daemon.api.outgoing_mail`` and records each step
with ``update_outgoing`` (m365sync.crm.sqlite_outbox is the semantic reference): queued ->
sending (with its start time, written before the send) -> sent, or failed with words. The
sent copy's ids (graph id, internetMessageId, conversation) come back on the row. Only
the daemon writes the state and those ids; a user may retry a failed mail of their own.
"""

import re
import uuid
from datetime import timedelta

from odoo.exceptions import AccessError, UserError, ValidationError

from odoo import Command, api, fields, models

from .m365_tools import normalise_address

DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"
MANAGER_GROUP = "crm_microsoft365.group_m365_manager"

# Written by the daemon (through m365.daemon.api, as superuser) or by the owner's Retry button
# (sudo after the owner check); an ordinary write to one of them is refused.
DAEMON_FIELDS = frozenset(
    {
        "state",
        "error",
        "send_started_at",
        "sent_at",
        "graph_id",
        "internet_message_id",
        "conversation_id",
        "attempts",
        "requested_by",
        "idempotency_key",
    }
)
# What the person wrote: editable while nothing is on its way.
CONTENT_FIELDS = frozenset(
    {
        "account_id",
        "partner_id",
        "email_to",
        "email_cc",
        "email_bcc",
        "subject",
        "body_html",
        "attachment_ids",
        "reply_to_graph_id",
        "reply_thread_id",
    }
)
STATES = [
    ("queued", "Queued"),
    ("sending", "Sending"),
    ("sent", "Sent"),
    ("failed", "Failed"),
]
# How long after its send a sent mail whose copy is not linked yet is handed to the daemon
# again, to look for the copy wherever the person filed it (m365sync.sync.outbox.LINK_WINDOW).
LINK_FOR = timedelta(hours=1)
# Graph attaches files up to 3 MB in one request (m365sync.sync.outbox.MAX_ATTACHMENT_BYTES).
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024


_NAMED = re.compile(r'^\s*(?:"(?P<quoted>[^"]*)"|(?P<plain>[^<>"]*?))\s*<(?P<address>[^<>]*)>\s*$')


def _pieces(text):
    """Split on commas, semicolons and line breaks outside quotes and angle brackets."""
    pieces, current, quoted, angled = [], [], False, False
    for char in text:
        if char == '"' and not angled:
            quoted = not quoted
        elif char == "<" and not quoted:
            angled = True
        elif char == ">" and not quoted:
            angled = False
        elif char in ",;\n" and not quoted and not angled:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return [p.strip() for p in pieces if p.strip()]


def split_addresses(text):
    """``'Ann <ann@x.com>, "Doe, Bob" <bob@y.com>; c@z.com'`` -> ``[(name, address, raw)]``
    (raw: the piece as typed, for error messages). The address is not validated here."""
    if not text or not text.strip():
        return []
    found = []
    for raw in _pieces(text):
        match = _NAMED.match(raw)
        if match:
            name = (match.group("quoted") or match.group("plain") or "").strip()
            found.append((name, match.group("address").strip(), raw))
        else:
            found.append(("", raw, raw))
    return found


# Characters that would end a display name or an address in a header or in split_addresses.
_NAME_BREAKERS = re.compile(r'[\x00-\x1f\x7f"<>,;\\\u2028\u2029]+')


def format_address(name, address):
    """One recipient as text, from a (display name, address) pair: ``"Name" <address>``, or the
    address alone. Whatever the name holds (quotes, brackets, commas, line breaks), the result
    is exactly one recipient; an address that is not one valid address gives ``""``."""
    address = (address or "").strip()
    if not normalise_address(address) or _NAME_BREAKERS.search(address):
        return ""
    name = clean_display_name(name)
    return f'"{name}" <{address}>' if name else address


def clean_display_name(name):
    """A display name without what would end it in a header (quotes, brackets, commas, line
    breaks), its spaces collapsed."""
    return " ".join(_NAME_BREAKERS.sub(" ", name or "").split())


def invalid_addresses(text):
    """The pieces of ``text`` that are not one valid address each."""
    return [raw for _name, address, raw in split_addresses(text) if not normalise_address(address)]


def wire_addresses(text):
    """EmailAddress objects of the wire: ``[{"address", "name"}]``."""
    return [
        {"address": address, "name": name}
        for name, address, _raw in split_addresses(text)
        if normalise_address(address)
    ]


class M365Outbox(models.Model):
    _name = "m365.outbox"
    _description = "Microsoft 365 Outbox"
    _order = "id desc"
    _rec_name = "subject"

    account_id = fields.Many2one(
        "m365.account",
        string="Send Through",
        required=True,
        ondelete="cascade",
        index=True,
        domain="[('user_id', '=', uid)]",
    )
    user_id = fields.Many2one(related="account_id.user_id", store=True, string="Owner")
    partner_id = fields.Many2one("res.partner", string="Contact", ondelete="set null", index=True)
    idempotency_key = fields.Char(
        required=True,
        copy=False,
        readonly=True,
        default=lambda self: self._default_idempotency_key(),
    )
    email_to = fields.Char(string="To", help="Comma-separated addresses.")
    email_cc = fields.Char(string="Cc", help="Comma-separated addresses.")
    email_bcc = fields.Char(string="Bcc", help="Comma-separated addresses.")
    subject = fields.Char()
    body_html = fields.Html(string="Body", sanitize_style=True)
    attachment_ids = fields.Many2many(
        "ir.attachment",
        "m365_outbox_ir_attachment_rel",
        "outbox_id",
        "attachment_id",
        string="Attachments",
    )
    reply_to_graph_id = fields.Char(
        string="Reply To (Graph ID)",
        help="The immutable id of the thread's newest message in this account's mailbox: the "
        "mail goes out as a reply to it, so Outlook threads it.",
    )
    reply_thread_id = fields.Many2one(
        "m365.mail.thread", string="In Reply To", ondelete="set null", index=True
    )
    thread_id = fields.Many2one(
        "m365.mail.thread",
        compute="_compute_sent_links",
        help="The thread the sent mail belongs to (its conversation), or the one it replies in.",
    )
    sent_message_id = fields.Many2one("m365.mail.message", compute="_compute_sent_links")
    state = fields.Selection(
        STATES,
        default="queued",
        required=True,
        readonly=True,
        index=True,
        copy=False,
    )
    error = fields.Text(readonly=True, copy=False)
    send_started_at = fields.Datetime(string="Send Started", readonly=True, copy=False)
    sent_at = fields.Datetime(readonly=True, copy=False)
    graph_id = fields.Char(
        string="Sent Items ID",
        readonly=True,
        copy=False,
        help="Immutable id of the Sent Items copy.",
    )
    internet_message_id = fields.Char(string="Message-ID", readonly=True, copy=False)
    conversation_id = fields.Char(readonly=True, copy=False)
    attempts = fields.Integer(readonly=True, copy=False)
    requested_by = fields.Char(
        readonly=True,
        copy=False,
        help="Login of the user who queued the mail: only the account's owner may send "
        "through it (the daemon checks it again).",
    )
    is_mine = fields.Boolean(compute="_compute_is_mine")

    _sql_constraints = [
        ("idempotency_unique", "UNIQUE (idempotency_key)", "An outgoing mail is queued once."),
    ]

    def _default_idempotency_key(self):
        return uuid.uuid4().hex

    def _compute_sent_links(self):
        Thread = self.env["m365.mail.thread"]
        Message = self.env["m365.mail.message"]
        conversations = {c for c in self.mapped("conversation_id") if c}
        imids = {i for i in self.mapped("internet_message_id") if i}
        threads = (
            {
                t.conversation_id: t
                for t in Thread.search([("conversation_id", "in", list(conversations))])
            }
            if conversations
            else {}
        )
        messages = (
            {
                m.internet_message_id: m
                for m in Message.search([("internet_message_id", "in", list(imids))])
            }
            if imids
            else {}
        )
        for mail in self:
            message = messages.get(mail.internet_message_id) or Message
            mail.sent_message_id = message
            mail.thread_id = (
                message.thread_id or threads.get(mail.conversation_id) or mail.reply_thread_id
            )

    @api.depends("subject", "email_to")
    def _compute_display_name(self):
        for mail in self:
            mail.display_name = mail.subject or self.env._(
                "(no subject) to %(to)s", to=mail.email_to or "?"
            )

    def _compute_is_mine(self):
        for mail in self:
            mail.is_mine = mail.account_id.sudo().user_id == self.env.user

    # --- checks -----------------------------------------------------------------------------

    def _is_daemon(self):
        return self.env.su or self.env.user.has_group(DAEMON_GROUP)

    def _check_protected(self, vals):
        protected = DAEMON_FIELDS & set(vals)
        if protected and not self._is_daemon():
            raise AccessError(
                self.env._(
                    "Only the m365sync daemon may change %(fields)s of an outgoing mail.",
                    fields=", ".join(sorted(protected)),
                )
            )

    def _check_own_accounts(self, account_ids):
        """Only an account's owner may send through it (managers included: they see every
        outbox, but write only through their own mailboxes)."""
        if self._is_daemon():
            return
        accounts = self.env["m365.account"].sudo().browse(account_ids)
        for account in accounts:
            if account.user_id != self.env.user:
                raise AccessError(
                    self.env._(
                        "You can only send through your own Microsoft 365 account; %(account)s "
                        "belongs to someone else.",
                        account=account.address,
                    )
                )

    @api.model
    def _validate_recipients(self, vals):
        """Clear words for each bad input, before anything is queued."""
        for field, label in (("email_to", "To"), ("email_cc", "Cc"), ("email_bcc", "Bcc")):
            bad = invalid_addresses(vals.get(field))
            if bad:
                raise ValidationError(
                    self.env._(
                        "%(field)s: not a valid email address: %(bad)s. Separate addresses "
                        "with commas, like ann@example.com, Bob <bob@example.com>.",
                        field=label,
                        bad=", ".join(repr(b) for b in bad[:3]),
                    )
                )
        if not any(split_addresses(vals.get(f)) for f in ("email_to", "email_cc", "email_bcc")):
            raise ValidationError(
                self.env._("The mail has no recipient: add at least one address.")
            )

    @api.model_create_multi
    def create(self, vals_list):
        # Copies: Odoo runs the whole call again after a serialization failure with the same
        # dicts, and a requested_by written into them here would then read as the user's own
        # attempt to set it (found by the reliability soak against Odoo).
        vals_list = [dict(vals) for vals in vals_list]
        for vals in vals_list:
            if not self._is_daemon():
                # A user queues; the daemon moves it on.
                extra = DAEMON_FIELDS & set(vals)
                if vals.get("state", "queued") == "queued":
                    extra -= {"state"}
                if extra:
                    self._check_protected({k: True for k in extra})
                vals["requested_by"] = self.env.user.login
            else:
                vals.setdefault("requested_by", self.env.user.login)
            self._validate_recipients(vals)
        self._check_own_accounts(
            {vals.get("account_id") for vals in vals_list if vals.get("account_id")}
        )
        mails = super().create(vals_list)
        mails._own_attachments()
        return mails

    def write(self, vals):
        self._check_protected(vals)
        if CONTENT_FIELDS & set(vals) and not self._is_daemon():
            busy = self.filtered(lambda m: m.state in ("sending", "sent"))
            if busy:
                raise UserError(
                    self.env._(
                        "This mail is already on its way or sent: it can no longer be changed."
                    )
                )
            if vals.get("account_id"):
                self._check_own_accounts({vals["account_id"]})
        result = super().write(vals)
        if {"email_to", "email_cc", "email_bcc"} & set(vals):
            for mail in self:
                mail._validate_recipients(
                    {
                        "email_to": mail.email_to,
                        "email_cc": mail.email_cc,
                        "email_bcc": mail.email_bcc,
                    }
                )
        if "attachment_ids" in vals:
            self._own_attachments()
        return result

    @api.ondelete(at_uninstall=False)
    def _unlink_except_sending(self):
        if not self._is_daemon() and self.filtered(lambda m: m.state == "sending"):
            raise UserError(
                self.env._(
                    "This mail is being sent right now: wait until it is sent or failed before "
                    "deleting it."
                )
            )

    def _own_attachments(self):
        """The outbox row owns its files (their access follows the row's): an upload from the
        wizard (attached to no record yet) is moved onto the row; a file of another record is
        copied, never taken away from it."""
        for mail in self:
            loose = mail.attachment_ids.filtered(
                lambda a, m=mail: a.res_model != m._name or a.res_id != m.id
            )
            if not loose:
                continue
            if not self._is_daemon():
                # Only files the user may read may leave through their mailbox.
                loose.check("read")
            uploads = loose.filtered(lambda a: not a.res_id)
            # sudo: the user may read these files (checked above) and owns the row; an upload
            # belongs to no record, so moving it needs no other right, and a copy leaves the
            # original where it was.
            uploads.sudo().write({"res_model": self._name, "res_id": mail.id})
            others = loose - uploads
            if others:
                copies = self.env["ir.attachment"]
                for attachment in others.sudo():
                    copies |= attachment.copy({"res_model": self._name, "res_id": mail.id})
                mail.sudo().write(
                    {
                        "attachment_ids": [Command.unlink(a.id) for a in others]
                        + [Command.link(a.id) for a in copies]
                    }
                )

    # --- actions ----------------------------------------------------------------------------

    def action_retry(self):
        """A failed mail back in the queue (the person looked: it is not in their mailbox)."""
        for mail in self:
            if mail.account_id.sudo().user_id != self.env.user:
                raise AccessError(
                    self.env._(
                        "Only the owner of %(account)s may retry its mail.",
                        account=mail.account_id.address,
                    )
                )
            if mail.state != "failed":
                raise UserError(self.env._("Only a failed mail can be retried."))
        # sudo: state and error are the daemon's fields; a retry is the owner's decision.
        self.sudo().write({"state": "queued", "error": False, "send_started_at": False})
        return True

    def action_open_thread(self):
        self.ensure_one()
        if not self.thread_id:
            return False
        return {
            "type": "ir.actions.act_window",
            "res_model": "m365.mail.thread",
            "res_id": self.thread_id.id,
            "view_mode": "form",
            "target": "new",
        }

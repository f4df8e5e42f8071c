"""Compose Email: a mail written in the CRM, sent through the user's own Outlook.

Opened from a contact or company (``default_partner_id``) or as a Reply from an email thread
(``default_thread_id``). Send queues an ``m365.outbox`` row; the daemon sends it within
seconds (``sync.outbox_interval_seconds``) and links the Sent Items copy back.
"""

from markupsafe import Markup
from odoo.exceptions import RedirectWarning, UserError
from odoo.tools import email_normalize

from odoo import Command, api, fields, models

from ..models.m365_outbox import (
    MAX_ATTACHMENT_BYTES,
    clean_display_name,
    format_address,
    invalid_addresses,
    split_addresses,
)
from ..models.m365_tools import normalise_address, normalize_email

# Accounts whose mail cannot go out now, and the words saying why.
UNUSABLE = {
    "needs_reconnect": "needs to be reconnected",
    "paused": "is paused",
}


def own_accounts(env):
    """The user's own accounts, usable ones first."""
    accounts = env["m365.account"].search([("user_id", "=", env.user.id)], order="id")
    return accounts.sorted(lambda a: (a.status in UNUSABLE, a.id))


def require_account(env, purpose):
    """The user's usable account, or a RedirectWarning pointing to Connect."""
    accounts = own_accounts(env)
    usable = accounts.filtered(lambda a: a.status not in UNUSABLE)
    if usable:
        return usable[0]
    action = env.ref("crm_microsoft365.m365_account_action", raise_if_not_found=False)
    if accounts:
        message = env._(
            "Your Microsoft 365 account %(account)s %(why)s, so it cannot %(purpose)s. Open "
            "Microsoft 365 Accounts and reconnect or resume it first.",
            account=accounts[0].address,
            why=env._(UNUSABLE[accounts[0].status]),  # pylint: disable=translation-not-lazy
            purpose=purpose,
        )
    else:
        message = env._(
            "You have no connected Microsoft 365 account to %(purpose)s. Open Microsoft 365 "
            "Accounts and click Connect Microsoft Account first.",
            purpose=purpose,
        )
    if action:
        raise RedirectWarning(message, action.id, env._("Microsoft 365 Accounts"))
    raise UserError(message)


def check_own_usable_account(env, account, not_yours):
    """The wizards' common check before anything is queued: the user's own account (``not_yours``
    is the sentence otherwise), and one the daemon can use now."""
    # sudo: someone else's account is not readable at all; its owner is what is checked.
    if account.sudo().user_id != env.user:
        raise UserError(not_yours)
    if account.status in UNUSABLE:
        raise UserError(
            env._(
                "%(account)s %(why)s: reconnect or resume it in Microsoft 365 Accounts first.",
                account=account.address,
                why=env._(UNUSABLE[account.status]),  # pylint: disable=translation-not-lazy
            )
        )


class M365ComposeWizard(models.TransientModel):
    _name = "m365.compose.wizard"
    _description = "Compose Email through Microsoft 365"

    account_id = fields.Many2one(
        "m365.account",
        string="From",
        required=True,
        domain="[('user_id', '=', uid)]",
        help="Your own Microsoft 365 mailbox: the mail leaves from it and lands in its Sent Items.",
    )
    partner_id = fields.Many2one("res.partner", string="Contact")
    thread_id = fields.Many2one("m365.mail.thread", string="Reply In")
    reply_to_graph_id = fields.Char(readonly=True)
    reply_note = fields.Char(readonly=True)
    # To: contacts, as Odoo's own composer has them (a new address typed there becomes a
    # contact). The outbox gets them as text built from each one's (name, address) pair.
    recipient_ids = fields.Many2many(
        "res.partner",
        "m365_compose_wizard_recipient_rel",
        "wizard_id",
        "partner_id",
        string="To",
    )
    email_to = fields.Char(string="To (addresses)", compute="_compute_email_to")
    email_cc = fields.Char(string="Cc")
    email_bcc = fields.Char(string="Bcc")
    subject = fields.Char()
    body_html = fields.Html(string="Message", sanitize_style=True)
    attachment_ids = fields.Many2many(
        "ir.attachment",
        "m365_compose_wizard_ir_attachment_rel",
        "wizard_id",
        "attachment_id",
        string="Attachments",
    )

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        thread = self.env["m365.mail.thread"].browse(values.get("thread_id") or [])
        partner = self.env["res.partner"].browse(values.get("partner_id") or [])
        if not partner and self.env.context.get("active_model") == "res.partner":
            partner = self.env["res.partner"].browse(self.env.context.get("active_id") or [])
            values["partner_id"] = partner.id
        account = self.env["m365.account"].browse(values.get("account_id") or [])
        if not account:
            account = require_account(self.env, self.env._("send mail"))
        if thread:
            reply = self._reply_values(thread, account)
            if partner:
                reply.pop("partner_id")
            values.update(reply)
        else:
            values["account_id"] = account.id
            # default_email_to: addresses a caller prefills (an opportunity's email_from).
            prefill = self.env.context.get("default_email_to")
            if prefill:
                pairs = [(name, address) for name, address, _raw in split_addresses(prefill)]
                values.update(self._recipient_values(pairs))
            elif partner.email and "recipient_ids" not in values:
                values["recipient_ids"] = [Command.set(partner.ids)]
        return values

    @api.model
    def _recipient_values(self, pairs):
        """To for (display name, address) pairs: the contact holding each address, or a new one
        (its name cleaned as format_address cleans it) when the user may create contacts; a
        note names those left out. Invalid addresses are left out."""
        Partner = self.env["res.partner"]
        may_create = Partner.has_access("create")
        found, left_out = Partner, []
        for name, address in pairs:
            if not format_address("", address):
                continue
            address = address.strip()
            partner = Partner.search([("email_normalized", "=", email_normalize(address))], limit=1)
            if not partner and may_create:
                name = clean_display_name(name)
                partner = Partner.create({"name": name or address, "email": address})
            if partner:
                found |= partner
            else:
                left_out.append(format_address(name, address))
        values = {"recipient_ids": [Command.set(found.ids)]}
        if left_out:
            values["reply_note"] = self.env._(
                "%(addresses)s: not a contact, and you cannot create contacts. Add them to Cc, "
                "or ask an administrator for the Contact Creation right.",
                addresses=", ".join(left_out),
            )
        return values

    @api.depends("recipient_ids", "recipient_ids.name", "recipient_ids.email")
    def _compute_email_to(self):
        for wizard in self:
            wizard.email_to = ", ".join(
                text for _partner, text in wizard._recipient_addresses() if text
            )

    def _recipient_addresses(self):
        """[(partner, text)]: each contact of To as one formatted address from its (name,
        address) pair, or "" when its email is not exactly one valid address."""
        found = []
        for partner in self.recipient_ids:
            pieces = split_addresses(partner.email or "")
            address = pieces[0][1] if len(pieces) == 1 else ""
            name = partner.name or ""
            if normalise_address(name) and normalise_address(name) == normalise_address(address):
                name = ""  # a contact named after its address: the address alone
            found.append((partner, format_address(name, address)))
        return found

    def _reply_values(self, thread, account):
        """Reply to the thread's newest message held by one of the user's accounts (its
        immutable id in that mailbox), to its sender, or to its recipients if the user sent it."""
        Link = self.env["m365.mail.message.link"]
        accounts = own_accounts(self.env).filtered(lambda a: a.status not in UNUSABLE)
        messages = thread.message_ids.sorted(
            lambda m: (m.date or fields.Datetime.from_string("1970-01-01"), m.id), reverse=True
        )
        values = {"thread_id": thread.id, "account_id": account.id}
        for message in messages:
            link = Link.search(
                [("message_id", "=", message.id), ("account_id", "in", accounts.ids)],
                order="id desc",
                limit=1,
            )
            if link:
                values["account_id"] = link.account_id.id
                values["reply_to_graph_id"] = link.graph_id
                values.update(self._reply_recipients(message, link.account_id))
                break
        else:
            values["reply_note"] = self.env._(
                "None of your mailboxes holds this thread: the mail goes out as a new message."
            )
            if messages:
                note = values["reply_note"]
                values.update(self._reply_recipients(messages[0], account))
                values["reply_note"] = " ".join(filter(None, (note, values.get("reply_note"))))
        subject = thread.subject or ""
        if subject and not subject.lower().startswith(("re:", "aw:", "sv:")):
            subject = f"RE: {subject}"
        values["subject"] = subject
        values["partner_id"] = thread.partner_ids.filtered(lambda p: not p.is_company)[:1].id
        return values

    def _reply_recipients(self, message, account):
        """To: the sender, or the recipients when the user sent it, as contacts found or made
        from the stored (name, address) pairs: a display name is the sender's text and never
        decides how many recipients there are (issue #13)."""
        own = normalize_email(account.address)
        sender = normalize_email(message.from_address)
        if sender and sender != own:
            pairs = [(message.from_name, message.from_address)]
        else:
            people = message.participant_ids.filtered(
                lambda p: p.role == "to" and p.address != own
            )
            pairs = [(p.name, p.address) for p in people]
        return self._recipient_values(pairs)

    @api.onchange("partner_id")
    def _onchange_partner_id(self):
        if self.partner_id.email and not self.recipient_ids and not self.thread_id:
            self.recipient_ids = self.partner_id

    # --- send -------------------------------------------------------------------------------

    def _check_sendable(self):
        self.ensure_one()
        check_own_usable_account(
            self.env,
            self.account_id,
            self.env._("You can only send through your own Microsoft 365 account."),
        )
        unusable = [partner for partner, text in self._recipient_addresses() if not text]
        if unusable:
            raise UserError(
                self.env._(
                    "To: %(names)s has no single valid email address.",
                    names=", ".join(p.display_name for p in unusable[:3]),
                )
            )
        for field, label in (("email_cc", "Cc"), ("email_bcc", "Bcc")):
            bad = invalid_addresses(self[field])
            if bad:
                raise UserError(
                    self.env._(
                        "%(field)s: not a valid email address: %(bad)s.",
                        field=label,
                        bad=", ".join(repr(b) for b in bad[:3]),
                    )
                )
        if not any(split_addresses(self[f]) for f in ("email_to", "email_cc", "email_bcc")):
            raise UserError(self.env._("Add at least one recipient."))
        for attachment in self.attachment_ids:
            if (attachment.file_size or 0) > MAX_ATTACHMENT_BYTES:
                raise UserError(
                    self.env._(
                        "The attachment %(name)s (%(size).1f MB) is over Microsoft Graph's 3 MB "
                        "limit for one request; send a link to it instead.",
                        name=attachment.name,
                        size=attachment.file_size / (1024 * 1024),
                    )
                )

    def _outbox_values(self):
        return {
            "account_id": self.account_id.id,
            "partner_id": self.partner_id.id or False,
            "email_to": self.email_to or False,
            "email_cc": self.email_cc or False,
            "email_bcc": self.email_bcc or False,
            "subject": self.subject or "",
            "body_html": self.body_html or Markup("<p></p>"),
            "attachment_ids": [fields.Command.set(self.attachment_ids.ids)],
            "reply_to_graph_id": self.reply_to_graph_id or False,
            "reply_thread_id": self.thread_id.id or False,
        }

    def action_send(self):
        self._check_sendable()
        outbox = self.env["m365.outbox"].create(self._outbox_values())
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "title": self.env._("Email queued"),
                "message": self.env._(
                    "%(subject)s is queued; sent through Outlook within seconds.",
                    subject=outbox.subject or self.env._("Your mail"),
                ),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def action_open_outbox(self):
        return self.env["ir.actions.act_window"]._for_xml_id("crm_microsoft365.m365_outbox_action")

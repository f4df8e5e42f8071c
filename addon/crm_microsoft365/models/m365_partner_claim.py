from datetime import timedelta

from odoo import api, fields, models


class M365PartnerClaim(models.Model):
    """One row per key the daemon creates partners by (``email:<normalised address>`` for a
    contact, ``domain:<work domain>`` for a company): what makes ``create_partners`` create a
    partner once when two accounts' cycles meet the same new sender at the same moment.

    Two such RPCs run in parallel REPEATABLE READ transactions, and neither snapshot sees the
    partner the other is making, so a search finds none in both. Each call therefore first
    upserts its keys here (`_claim`): the later of two upserts of one key waits for the
    earlier transaction and, once that commits, PostgreSQL raises a serialization failure
    (the row changed after the later snapshot was taken), which Odoo's RPC layer
    (``odoo.service.model.retrying``) answers by running the call again on a fresh
    snapshot, where the partner is found. A unique violation would not do: Odoo does not
    retry it, so the later cycle would fail instead of finding the partner.

    A claim never stands for a partner: the partners are always searched, so one deleted or
    merged away by a person is simply made again by the next mail from that sender (the
    claim row is updated, not trusted). Rows only matter while a transaction older than
    them runs; the autovacuum drops those older than a day."""

    _name = "m365.partner.claim"
    _description = "Microsoft 365 Partner Creation Claim"
    _rec_name = "key"

    key = fields.Char(required=True, readonly=True)

    _sql_constraints = [
        ("key_unique", "UNIQUE (key)", "One claim per partner key."),
    ]

    @api.model
    def _claim(self, keys):
        """Upsert ``keys`` in one statement, in a fixed order (two calls claiming the same keys
        cannot deadlock). ``DO UPDATE``, not ``DO NOTHING``: a claim this snapshot sees is
        still written, so two calls re-creating a deleted partner also meet on its row."""
        keys = sorted({k for k in keys if k})
        if not keys:
            return
        self.env.cr.execute(
            "INSERT INTO m365_partner_claim (key, create_uid, create_date, write_uid, write_date) "
            "SELECT k, %(uid)s, now() at time zone 'UTC', %(uid)s, now() at time zone 'UTC' "
            "FROM unnest(%(keys)s::varchar[]) AS k ORDER BY k "
            "ON CONFLICT (key) DO UPDATE SET write_uid = EXCLUDED.write_uid, "
            "write_date = EXCLUDED.write_date",
            {"keys": keys, "uid": self.env.uid},
        )
        self.invalidate_model(["write_date", "write_uid"])

    @api.autovacuum
    def _gc_old_claims(self):
        """A claim only matters to a transaction that began before it was written; none of
        the daemon's RPCs runs for a day."""
        cutoff = fields.Datetime.now() - timedelta(days=1)
        self.search([("write_date", "<", cutoff)]).unlink()

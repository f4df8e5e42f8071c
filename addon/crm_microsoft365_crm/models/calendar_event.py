from odoo import models


class CalendarEvent(models.Model):
    _inherit = "calendar.event"

    def _m365_synced_from_outlook(self):
        """A meeting from Outlook without an opportunity gets the one open opportunity of its
        attendees (their contact's); with several, none is guessed: the user sets it on the
        meeting."""
        result = super()._m365_synced_from_outlook()
        events = self.filtered(lambda e: not e.opportunity_id and not e.m365_is_series_master)
        if not events:
            return result
        internal = self.env["res.users"].sudo().search([("share", "=", False)]).partner_id
        contacts = events.partner_ids - internal
        if not contacts:
            return result
        leads = (
            self.env["crm.lead"]
            .sudo()
            .search([("type", "=", "opportunity"), ("probability", "<", 100), ("partner_id", "in", contacts.ids)])
        )
        by_partner = {}
        for lead in leads:
            by_partner.setdefault(lead.partner_id.id, self.env["crm.lead"].sudo())
            by_partner[lead.partner_id.id] |= lead
        for event in events:
            candidates = self.env["crm.lead"].sudo()
            for partner in event.partner_ids - internal:
                candidates |= by_partner.get(partner.id, candidates.browse())
            if len(candidates) == 1:
                event.opportunity_id = candidates
        return result

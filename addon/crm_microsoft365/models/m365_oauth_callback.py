"""Microsoft's answer to a sign-in, held between its POST and the user's own GET.

The identity platform answers with ``response_mode=form_post``: a cross-site POST to the
redirect URI, so the authorization code never sits in a URL (nor in Odoo's access log, a
proxy's log or the browser's history). Odoo's session cookie does not come with a cross-site
POST, so that request cannot tell whose sign-in it is: it seals the code for the daemon at once
and keeps it here, keyed by a hash of ``state``, then sends the browser to a GET of the same
route carrying only the state, where the user's session is present and the pending sign-in is
matched. A row lives for minutes and is taken (deleted) once; nobody reads this model but the
controller (no access rights: superuser only).
"""

import hashlib
from datetime import timedelta

from odoo import api, fields, models

# A sign-in answered but not picked up by its browser within this time is void.
LIFETIME = timedelta(minutes=15)
# Unauthenticated callers can post here: at most this many answers wait at once.
MAX_WAITING = 1000


def state_hash(state: bytes) -> str:
    """The key of an answer: a hash, so the table holds no state a browser could replay."""
    return hashlib.sha256(b"m365-oauth-state:" + state).hexdigest()


class M365OAuthCallback(models.Model):
    _name = "m365.oauth.callback"
    _description = "Microsoft 365 sign-in answer (transient)"
    _log_access = True

    state_hash = fields.Char(required=True, index=True, readonly=True)
    # The code and PKCE verifier sealed to the daemon's public key (Odoo cannot open it).
    sealed = fields.Text(readonly=True)
    error = fields.Char(readonly=True)
    error_description = fields.Text(readonly=True)

    _sql_constraints = [("state_hash_unique", "unique(state_hash)", "One answer per sign-in.")]

    @api.model
    def _expire(self):
        cutoff = fields.Datetime.now() - LIFETIME
        self.sudo().search([("create_date", "<", cutoff)]).unlink()

    @api.model
    def _keep(self, state, values):
        """Store Microsoft's answer for ``state`` (bytes); False when too many wait already.
        A second answer for one state replaces the first: only the browser holding the state
        in its session picks it up, and PKCE ties the code to that sign-in."""
        self._expire()
        answers = self.sudo()
        key = state_hash(state)
        found = answers.search([("state_hash", "=", key)])
        if found:
            found.unlink()
        elif answers.search_count([]) >= MAX_WAITING:
            return False
        answers.create(dict(values, state_hash=key))
        return True

    @api.model
    def _take(self, state):
        """The answer waiting for ``state`` (bytes), removed as it is taken; None when there is
        none or it is too old."""
        self._expire()
        found = self.sudo().search([("state_hash", "=", state_hash(state))], limit=1)
        if not found:
            return None
        answer = {"sealed": found.sealed, "error": found.error, "error_description": found.error_description}
        found.unlink()
        return answer

    @api.autovacuum
    def _gc_expired_answers(self):
        self._expire()

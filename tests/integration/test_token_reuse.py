"""One token refresh per access token, whatever form the identity platform names the granted
scopes in (issue #14, point 3).

Entra may answer ``"scope": "https://graph.microsoft.com/Mail.Read ..."`` for a request of
``Mail.Read``; msal files the access token under the answered form and, asked for the short
form, misses it: every Graph call then refreshed (and rotated, re-sealed and stored the refresh
token). The emulator answers in either form; the daemon must reuse its token in both.
"""

from __future__ import annotations

import json

import pytest

from m365sync.emulator.mailbox import Mailbox
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from m365sync.service.runtime import TOKEN_CACHE_PURPOSE

from .conftest import build_stack


def token_requests(emulator) -> int:
    return sum(1 for r in emulator.requests if r.path.endswith("/oauth2/v2.0/token"))


def graph_requests(emulator) -> int:
    return sum(1 for r in emulator.requests if r.path.startswith("/v1.0/") and not r.in_batch)


@pytest.mark.parametrize("form", ["short", "qualified"])
def test_a_cycle_refreshes_at_most_once_whatever_the_scope_form(tmp_path, form):
    stack = build_stack(
        tmp_path, Mailbox.seeded(size=300, seed=3), emulator_options={"scope_form": form}
    )
    try:
        account = connect_account(stack.runtime, browser="follow")
        redeemed = token_requests(stack.emulator)
        assert redeemed == 1
        cache = json.loads(
            stack.runtime.keyring.open(
                stack.gateway.get_account(account.id).sealed_token_cache,
                purpose=TOKEN_CACHE_PURPOSE,
            )
        )
        targets = {entry["target"] for entry in cache["AccessToken"].values()}
        expected = "https://graph.microsoft.com/mail.read" if form == "qualified" else "mail.read"
        assert any(expected in target.lower().split() for target in targets), targets

        connected = graph_requests(stack.emulator)  # the connect's own /me
        full = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
        assert full.error is None, full.error
        graph = graph_requests(stack.emulator)
        assert graph - connected > 20  # pages, batches, folders, calendar, subscriptions
        # The connect's access token is still fresh: the full cycle needs no token request.
        assert token_requests(stack.emulator) == redeemed
        assert full.token_requests == 0
        assert full.graph_requests == graph - connected
        assert stack.gateway.last_sync_run(account.id).token_requests == 0

        stack.emulator.mailbox.add_message("inbox", {"subject": "one more"})
        incremental = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
        assert incremental.error is None
        assert incremental.token_requests == 0
        assert incremental.graph_requests == graph_requests(stack.emulator) - graph

        # A second process (fresh runtime) finds the token in the stored cache, too.
        other = stack.new_runtime()
        try:
            again = sync_account_mail(other, other.gateway.get_account(account.id))
            assert again.error is None
            assert again.token_requests == 0
        finally:
            other.close()
        assert token_requests(stack.emulator) == redeemed

        # Once the token nears expiry (or Graph says 401), one refresh serves the whole cycle.
        stack.emulator.identity.expire_access_tokens()
        after_expiry = sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
        assert after_expiry.error is None
        assert after_expiry.token_requests == 1
        assert token_requests(stack.emulator) == redeemed + 1
    finally:
        stack.runtime.close()
        stack.emulator.stop()


def test_the_emulator_names_scopes_in_the_form_asked(tmp_path):
    from m365sync.emulator.server import Emulator

    with Emulator(Mailbox(), state_dir=tmp_path, scope_form="qualified") as emulator:
        emulator.identity.answer_scopes_as("short")
        assert emulator.identity.scope_form == "short"
        with pytest.raises(ValueError, match="scope form"):
            emulator.identity.answer_scopes_as("long")

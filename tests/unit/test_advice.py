"""One table turns every failure into an account status and words a person can act on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from m365sync.domain import AccountStatus
from m365sync.errors import (
    BadClientCredentials,
    Conflict,
    CrmUnavailable,
    GraphError,
    IdentityUnavailable,
    InsufficientPermissions,
    MailboxUnavailable,
    NeedsReconnect,
    NotFound,
    SealingError,
    Throttled,
    Transient,
    advice_for,
    send_refusal,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (
            NeedsReconnect("x", code="invalid_grant/AADSTS50173"),
            AccountStatus.NEEDS_RECONNECT,
            "reconnect",
        ),
        (BadClientCredentials("x", code="invalid_client"), AccountStatus.FAILED, "client secret"),
        (
            InsufficientPermissions("x", status=403, code="ErrorAccessDenied"),
            AccountStatus.INSUFFICIENT_PERMISSIONS,
            "Mail.Read",
        ),
        (
            MailboxUnavailable("x", code="MailboxNotEnabledForRESTAPI"),
            AccountStatus.INSUFFICIENT_PERMISSIONS,
            "on-premises",
        ),
        (Transient("503 UnknownError", status=503), AccountStatus.FAILED, "retries"),
        (CrmUnavailable("connection refused"), AccountStatus.FAILED, "CRM could not be reached"),
        (SealingError("unknown kid"), AccountStatus.NEEDS_RECONNECT, "key"),
        (
            Conflict("Odoo at x: another writer changed the same records first; retry."),
            AccountStatus.FAILED,
            "nothing was lost",
        ),
        (KeyError("boom"), AccountStatus.FAILED, "Unexpected error"),
    ],
)
def test_each_failure_has_a_status_and_advice(error, status, words):
    advice = advice_for(error, now=NOW)
    assert advice.status is status
    assert words in advice.sentence


def test_throttled_says_until_when():
    advice = advice_for(Throttled("slow down", retry_after=90.5, status=429), now=NOW)
    assert advice.status is AccountStatus.THROTTLED
    assert advice.until == datetime(2026, 11, 25, 12, 1, 30, 500000, tzinfo=UTC)
    assert "12:01:30" in advice.sentence


def test_a_message_ending_in_a_period_is_not_followed_by_another():
    # Graph's own ErrorItemNotFound text ends with a period; the sentence must not double it.
    error = GraphError(
        "The specified object was not found in the store.", status=404, code="ErrorItemNotFound"
    )
    sentence = advice_for(error, now=NOW).sentence
    assert "store. The next cycle retries." in sentence
    assert ".." not in sentence
    assert ".." not in advice_for(ValueError("bad value."), now=NOW).sentence


def test_the_identity_platform_failing_is_not_blamed_on_graph():
    error = IdentityUnavailable(
        "the Microsoft identity platform at https://login.example.test/common could not be"
        " reached or failed (ConnectionError): check microsoft.authority_host and that this"
        " host can reach it",
        code="identity_unreachable",
    )
    advice = advice_for(error, now=NOW)
    assert advice.status is AccountStatus.FAILED
    assert advice.sentence.startswith("The Microsoft identity platform at https://login.")
    assert "microsoft.authority_host" in advice.sentence and "retries" in advice.sentence
    assert "Graph" not in advice.sentence and "service health" not in advice.sentence


@pytest.mark.parametrize(
    ("error", "reply", "begins", "then"),
    [
        (
            GraphError(
                'Recipient "x@y" isn\'t resolved.', status=400, code="ErrorInvalidRecipients"
            ),
            False,
            "Not sent: Microsoft refused this mail (400 ErrorInvalidRecipients)",
            "Correct it and send it again.",
        ),
        (
            NotFound(
                "The specified object was not found in the store.",
                status=404,
                code="ErrorItemNotFound",
            ),
            True,
            "Not sent: the mail this replies to is no longer in the mailbox",
            "Copy the text into a new mail.",
        ),
        (
            NotFound(
                "The specified object was not found in the store.",
                status=404,
                code="ErrorItemNotFound",
            ),
            False,
            "Not sent: Microsoft refused this mail (404 ErrorItemNotFound)",
            "Correct it and send it again.",
        ),
        (
            NeedsReconnect("grant revoked", status=400, code="invalid_grant"),
            False,
            "Not sent. Microsoft no longer accepts this account's sign-in",
            "Then send it again.",
        ),
        (ValueError("bad value."), False, "Not sent (ValueError): bad value", "report it"),
    ],
)
def test_a_refused_mail_says_it_was_not_sent_and_what_to_do(error, reply, begins, then):
    words = send_refusal(error, reply=reply)
    assert words.startswith(begins)
    assert then in words
    assert "next cycle" not in words  # a refused mail is not retried by itself
    assert ".." not in words

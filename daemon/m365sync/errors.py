"""The small, typed error hierarchy, and the one table that turns an error into advice.

Layers raise these; only `advice_for` decides what an account's status becomes and what
the person reading it should do. Context rides as attributes, never parsed back from text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from m365sync.domain import AccountStatus


class M365SyncError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(M365SyncError):
    """The configuration is unusable; the message is one sentence for the operator."""


class InputError(M365SyncError):
    """A command-line argument or an input file is unusable; the message is one sentence
    naming the argument or file, what is wrong with it and what to give instead."""


class SealingError(M365SyncError):
    """A sealed secret cannot be opened (unknown key id, tampered or foreign data)."""


# --- Graph and identity -------------------------------------------------------------------


class GraphError(M365SyncError):
    """A Graph or identity error. ``code`` is compared case-insensitively, never ``message``."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


class Throttled(GraphError):
    """429/503 persisted past the retry budget; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Transient(GraphError):
    """A 5xx, a dropped connection or a garbled answer that a later attempt may not see."""


class IdentityUnavailable(Transient):
    """The Microsoft identity platform (the configured authority), not Graph, could not be
    reached or failed for now: no token could be had, so Graph was not even asked."""


class SyncStateGone(GraphError):
    """410 (SyncStateNotFound, resyncRequired...): the delta round must restart from scratch."""


class NeedsReconnect(GraphError):
    """The grant is revoked, expired or lacks consent: only the user can fix it by reconnecting."""


class InsufficientPermissions(GraphError):
    """The token works but may not do this (403 ErrorAccessDenied, missing scope)."""


class MailboxUnavailable(GraphError):
    """The mailbox cannot be read over REST at all (MailboxNotEnabledForRESTAPI, no licence...)."""


class NotFound(GraphError):
    """404 on an item: usually gone between a listing and a read; skip it."""


class PreconditionFailed(GraphError):
    """412: the item changed since we read it (changeKey/etag mismatch)."""


class BadClientCredentials(GraphError):
    """invalid_client: the app's client secret is wrong or has expired (an operator problem)."""


class MalformedResponse(GraphError):
    """Graph answered 2xx with something we cannot read (HTML, broken JSON, missing links)."""


# --- CRM ----------------------------------------------------------------------------------


class CrmError(M365SyncError):
    """The CRM refused or failed a call."""


class CrmUnavailable(CrmError):
    """The CRM cannot be reached or is down; nothing was written, cursors did not move."""


class LeaseLost(CrmError):
    """Another worker holds this account now; stop working on it without writing."""


class Conflict(CrmError):
    """A concurrent writer changed the record first."""


class StalePlan(Conflict):
    """The CRM's state is no longer the one a plan was made from (an event bound, edited or
    deleted since): the store wrote nothing of it; plan again from fresh state."""


class CrmHasForms(CrmError):
    """A command-line CRM action (`m365sync send`, `meet`) asked of a CRM whose users act in
    its own forms; the message names the form."""


class UnknownAccount(CrmError):
    """No account with that id (or the caller may not see it)."""


# --- advice -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Advice:
    status: AccountStatus
    sentence: str
    until: datetime | None = None


def advice_for(error: BaseException, *, now: datetime | None = None) -> Advice:
    """Map any failure of an account's cycle to its status and words for a person.

    The sentence says what happened and what to do; it never carries tokens or mail content.
    """
    now = now or datetime.now(UTC)
    match error:
        case NeedsReconnect():
            return Advice(
                AccountStatus.NEEDS_RECONNECT,
                "Microsoft no longer accepts this account's sign-in "
                f"({error.code or 'invalid_grant'}): the owner must reconnect it "
                "(Settings > Microsoft 365 Accounts > Reconnect, or `m365sync connect`).",
            )
        case BadClientCredentials():
            return Advice(
                AccountStatus.FAILED,
                "Microsoft rejected the app's client secret (wrong or expired): an administrator "
                "must create a new secret in the Azure app registration and put it in the "
                "daemon's configuration.",
            )
        case InsufficientPermissions():
            return Advice(
                AccountStatus.INSUFFICIENT_PERMISSIONS,
                "Microsoft denied access to this mailbox "
                f"({error.code or error.status}): grant the app the delegated permissions "
                "User.Read, Mail.Read, Mail.Send and Calendars.ReadWrite (admin consent if "
                "your tenant requires it), then reconnect.",
            )
        case MailboxUnavailable():
            return Advice(
                AccountStatus.INSUFFICIENT_PERMISSIONS,
                f"This mailbox cannot be read through Microsoft Graph ({error.code}): it is "
                "inactive, unlicensed, shared without REST access, or hosted on-premises. "
                "Ask your Microsoft 365 administrator.",
            )
        case Throttled():
            until = now + timedelta(seconds=error.retry_after)
            return Advice(
                AccountStatus.THROTTLED,
                f"Microsoft asked us to slow down; the sync resumes by itself after "
                f"{until:%H:%M:%S} UTC. Nothing is lost.",
                until,
            )
        case IdentityUnavailable():
            words = _clause(error)
            return Advice(
                AccountStatus.FAILED,
                f"{words[:1].upper()}{words[1:]}. Nothing was lost; the next cycle retries from "
                "the last stored position.",
            )
        case Transient() | MalformedResponse():
            return Advice(
                AccountStatus.FAILED,
                f"Microsoft Graph failed for now ({error}); the next cycle retries from the last "
                "stored position. If this persists, check the Microsoft 365 service health.",
            )
        case CrmUnavailable():
            return Advice(
                AccountStatus.FAILED,
                f"The CRM could not be reached ({error}); nothing was lost and the next cycle "
                "resumes where this one stopped. Check that the CRM is running.",
            )
        case Conflict():
            return Advice(
                AccountStatus.FAILED,
                "The CRM was changed by another writer at the same moment (a person saving the "
                "same records); it kept nothing of this cycle's last write, nothing was lost, "
                "and the next cycle retries.",
            )
        case LeaseLost():
            return Advice(
                AccountStatus.SYNCING,
                "Another worker took over this account; it continues there.",
            )
        case SealingError():
            return Advice(
                AccountStatus.NEEDS_RECONNECT,
                "The stored sign-in cannot be opened with the daemon's keys (keys replaced or "
                "lost): restore the key file or reconnect the account.",
            )
        case GraphError(code="tls_verification_failed"):
            return Advice(
                AccountStatus.FAILED,
                f"{_clause(error)}. Nothing was lost; the next cycle retries.",
            )
        case GraphError():
            return Advice(
                AccountStatus.FAILED,
                f"Microsoft Graph refused a request ({error.status} {error.code}): "
                f"{_clause(error)}. The next cycle retries.",
            )
        case _:
            return Advice(
                AccountStatus.FAILED,
                f"Unexpected error ({type(error).__name__}): {_clause(error)}. The next cycle "
                "retries; report it if it repeats.",
            )


def send_refusal(error: M365SyncError, *, reply: bool = False) -> str:
    """Words for one outgoing mail Microsoft refused to send.

    Unlike a cycle's failure, nothing retries a refused mail by itself (sending it again
    unasked could surprise its reader hours later), so the words say it was not sent and what
    the person does next; `advice_for` keeps the account-wide causes (a revoked sign-in,
    missing permissions) in its own words.
    """
    match error:
        case NotFound() if reply:
            return (
                "Not sent: the mail this replies to is no longer in the mailbox (deleted, or "
                "moved where Outlook cannot reply to it). Copy the text into a new mail."
            )
        case (
            NeedsReconnect()
            | InsufficientPermissions()
            | MailboxUnavailable()
            | (BadClientCredentials())
            | SealingError()
        ):
            return f"Not sent. {advice_for(error).sentence} Then send it again."
        case GraphError():
            return (
                f"Not sent: Microsoft refused this mail ({error.status} {error.code}): "
                f"{_clause(error)}. Correct it and send it again."
            )
        case _:
            return (
                f"Not sent ({type(error).__name__}): {_clause(error)}. Send it again; report "
                "it if it repeats."
            )


def _clause(error: BaseException) -> str:
    """An error's own words to go before our next sentence: without their final period
    (Graph's "...not found in the store." would otherwise end in two)."""
    return str(error).strip().rstrip(".")

"""Connecting from the CRM: the addon's OAuth callback seals the code, the daemon redeems it.

Odoo never holds the client secret or a token (DESIGN.md, Secrets): its callback seals
``{"code", "code_verifier", "redirect_uri"}`` to the daemon's public key and stores that; this
module opens it, redeems the code with msal within seconds, stores the account with its sealed
token cache, and tells the CRM how it went (in words for the user who clicked Connect).
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime

from m365sync import __version__
from m365sync.errors import (
    BadClientCredentials,
    GraphError,
    InsufficientPermissions,
    M365SyncError,
    SealingError,
    Transient,
    advice_for,
)
from m365sync.service.connect import store_identity
from m365sync.service.runtime import Runtime

log = logging.getLogger(__name__)

CONNECT_PURPOSE = "authorization-code"


def publish_daemon_info(runtime: Runtime) -> None:
    """Publish the public keys (so the CRM can seal codes to us) and what the admin should see."""
    expires = runtime.config.microsoft.client_secret_expires
    runtime.gateway.publish_daemon_info(
        {
            "jwks": runtime.keyring.public_jwks(),
            "kid": runtime.keyring.newest_kid,
            "version": __version__,
            "host": socket.gethostname(),
            "seen_at": datetime.now(UTC).isoformat(),
            "client_secret_expires": expires.isoformat() if expires else None,
        }
    )


def redeem_pending_connects(runtime: Runtime) -> int:
    """Redeem every pending connect; returns how many became accounts."""
    connected = 0
    for pending in runtime.gateway.pending_connects():
        if not pending.owner_internal:
            # Never redeemed, however the request got there: the mail would be shared with the
            # CRM's users on behalf of someone who is not one of them (issue #13).
            runtime.gateway.finish_connect(
                pending.id, error="Only internal users of the CRM may connect a mailbox."
            )
            continue
        if not runtime.gateway.claim_connect(pending.id, runtime.holder):
            continue  # another replica redeems it
        try:
            payload = json.loads(runtime.keyring.open(pending.sealed, purpose=CONNECT_PURPOSE))
            identity = runtime.broker.redeem_code(
                payload["code"],
                code_verifier=payload["code_verifier"],
                redirect_uri=payload["redirect_uri"],
            )
            account = store_identity(runtime, identity, owner=pending.owner)
        except Transient as error:
            log.warning("connect request %s waits: %s", pending.id, error)
            continue  # the identity platform is down: the next pass tries again
        except (M365SyncError, ValueError, KeyError, TypeError) as error:
            words = connect_failure_words(error)
            log.warning("connect request %s failed: %s", pending.id, words)
            runtime.gateway.finish_connect(pending.id, error=words)
            continue
        runtime.gateway.finish_connect(pending.id, account_id=account.id)
        log.info("connect request %s became account %s", pending.id, account.id)
        connected += 1
    return connected


def connect_failure_words(error: Exception) -> str:
    """What the user who clicked Connect reads when it did not work, and what to do."""
    match error:
        case SealingError():
            return (
                "This sign-in was sealed to a key the daemon does not hold (were its keys "
                "replaced?): click Connect again."
            )
        case BadClientCredentials() | InsufficientPermissions():
            return advice_for(error).sentence
        case GraphError():
            return (
                f"Microsoft refused the sign-in code ({error.code or error.status}): it expired "
                "or was used already. Click Connect again."
            )
        case M365SyncError():
            return advice_for(error).sentence
        case _:
            return "The sign-in the CRM stored cannot be read: click Connect again."

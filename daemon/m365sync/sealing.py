"""Sealing secrets (token caches, authorization codes) so no database can read them.

Why JWE with ECDH-ES+A256KW / A256GCM: it is a standard, self-describing format (the header
names the key id), and anyone holding only the public key can seal — the Odoo addon seals
authorization codes to the daemon's published key without ever holding a private key.

Why a ``purpose`` in the protected header: the protected header is authenticated by GCM, so a
sealed token cache cannot be swapped in where an authorization code is expected (or the other
way round); opening checks the purpose it was asked for.

Keys live in one JWKS file (mode 0600) of EC P-256 private keys. The newest key seals; every
key in the file still opens, which is what makes rotation safe: rotate, re-seal everything,
and only then drop an old key by hand.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jwcrypto import jwe, jwk
from jwcrypto.common import JWException, json_encode

from m365sync.errors import ConfigError, SealingError

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
_ALLOWED = [ALG]
_ALLOWED_ENC = [ENC]


def new_kid(now: datetime | None = None) -> str:
    """A key id that sorts by creation day and stays unique within a day."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d}-{secrets.token_hex(4)}"


def _generate_key(kid: str) -> jwk.JWK:
    return jwk.JWK.generate(kty="EC", crv="P-256", kid=kid, use="enc", alg=ALG)


def seal_to_public_jwk(public_jwk: dict[str, Any], plaintext: bytes, purpose: str) -> str:
    """Seal ``plaintext`` to one public key; needs no private key (what the addon does).

    ``purpose`` is bound into the authenticated header, so the result only opens for the
    same purpose.
    """
    if not purpose:
        raise SealingError("a purpose is required to seal")
    try:
        key = jwk.JWK(**public_jwk)
    except (JWException, TypeError, ValueError) as exc:
        raise SealingError(f"not a usable public key: {exc}") from exc
    kid = public_jwk.get("kid")
    if not kid:
        raise SealingError("the public key has no kid; the opener could not pick its key")
    if key.has_private:
        key = jwk.JWK(**key.export_public(as_dict=True))
    header = {"alg": ALG, "enc": ENC, "kid": kid, "purpose": purpose}
    token = jwe.JWE(plaintext, protected=json_encode(header))
    token.allowed_algs = _ALLOWED + _ALLOWED_ENC
    token.add_recipient(key)
    return token.serialize(compact=True)


def _protected_header(sealed: str) -> dict[str, Any]:
    """Read the protected header without decrypting, to pick the key by kid."""
    try:
        token = jwe.JWE()
        token.deserialize(sealed)
        return json.loads(token.objects["protected"])
    except (JWException, ValueError, KeyError, TypeError) as exc:
        raise SealingError("not a sealed value (JWE compact expected)") from exc


class Keyring:
    """The daemon's sealing keys, kept in one JWKS file readable only by its owner."""

    def __init__(self, path: Path, keys: list[jwk.JWK]) -> None:
        if not keys:
            raise SealingError("a keyring needs at least one key")
        self._path = Path(path)
        self._keys = list(keys)  # oldest first; the last one seals
        self._lock = threading.Lock()

    # --- life cycle ---------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Keyring:
        """Open the key file, or create it with one fresh key when it does not exist yet."""
        path = Path(path)
        if not path.exists():
            ring = cls(path, [_generate_key(new_kid())])
            ring._save()
            return ring
        return cls(path, _read_keys(path))

    def generate(self) -> str:
        """Add a new newest key (old keys still open); returns its kid."""
        with self._lock:
            kid = new_kid()
            while any(k.get("kid") == kid for k in self._keys):
                kid = new_kid()
            self._keys.append(_generate_key(kid))
            self._save()
            return kid

    rotate = generate

    # --- use ----------------------------------------------------------------------------

    @property
    def kids(self) -> list[str]:
        """Key ids, oldest first."""
        return [k.get("kid") for k in self._keys]

    @property
    def newest_kid(self) -> str:
        return self._keys[-1].get("kid")

    def public_jwks(self) -> dict[str, Any]:
        """What the daemon publishes to the CRM: public halves only, newest last."""
        return {"keys": [k.export_public(as_dict=True) for k in self._keys]}

    def seal(self, plaintext: bytes, *, purpose: str) -> str:
        newest = self._keys[-1]
        return seal_to_public_jwk(newest.export_public(as_dict=True), plaintext, purpose)

    def open(self, sealed: str, *, purpose: str) -> bytes:
        """Decrypt with the key its header names; refuse a foreign purpose or a tampered value."""
        header = _protected_header(sealed)
        if header.get("alg") != ALG or header.get("enc") != ENC:
            raise SealingError("sealed with an algorithm this daemon does not accept")
        kid = header.get("kid")
        key = self._key(kid)
        if header.get("purpose") != purpose:
            raise SealingError(
                f"sealed for another purpose ({header.get('purpose')!r}, expected {purpose!r})"
            )
        try:
            token = jwe.JWE()
            token.allowed_algs = _ALLOWED + _ALLOWED_ENC
            token.deserialize(sealed, key=key)
        except (JWException, ValueError) as exc:
            raise SealingError(f"cannot open the sealed value with key {kid} (tampered?)") from exc
        return token.payload

    def reseal(self, sealed: str, purpose: str) -> str:
        """Re-seal with the newest key; a value already sealed with it is returned as is."""
        if _protected_header(sealed).get("kid") == self.newest_kid:
            self.open(sealed, purpose=purpose)  # still proves it is ours and intact
            return sealed
        return self.seal(self.open(sealed, purpose=purpose), purpose=purpose)

    # --- internals ----------------------------------------------------------------------

    def _key(self, kid: object) -> jwk.JWK:
        for key in self._keys:
            if key.get("kid") == kid:
                return key
        raise SealingError(f"sealed with an unknown key id {kid!r} (key file replaced?)")

    def _save(self) -> None:
        """Write atomically with mode 0600 from the start, so no moment exposes the keys."""
        payload = {"keys": [json.loads(k.export_private()) for k in self._keys]}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self._path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _read_keys(path: Path) -> list[jwk.JWK]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"the key file {path} is readable by others (mode {mode:o}): run `chmod 600 {path}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = [jwk.JWK(**item) for item in data["keys"]]
    except (OSError, ValueError, KeyError, TypeError, JWException) as exc:
        raise ConfigError(f"the key file {path} is not a JWKS of private keys: {exc}") from exc
    if not keys or not all(k.has_private and k.get("kid") for k in keys):
        raise ConfigError(f"the key file {path} must hold private keys, each with a kid")
    return keys

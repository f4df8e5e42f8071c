"""Sealing: round trip, rotation, tamper, purpose binding, unknown keys, file permissions."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from m365sync.errors import ConfigError, SealingError
from m365sync.sealing import Keyring, seal_to_public_jwk


@pytest.fixture
def ring(tmp_path):
    return Keyring.load_or_create(tmp_path / "keys.json")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip(ring):
    sealed = ring.seal(b"refresh-token-cache", purpose="token_cache")
    assert b"refresh-token-cache" not in sealed.encode()
    assert sealed.count(".") == 4  # JWE compact: five parts
    assert ring.open(sealed, purpose="token_cache") == b"refresh-token-cache"


def test_header_names_kid_purpose_and_algorithms(ring):
    header = json.loads(_unb64(ring.seal(b"x", purpose="auth_code").split(".")[0]))
    assert header["alg"] == "ECDH-ES+A256KW"
    assert header["enc"] == "A256GCM"
    assert header["kid"] == ring.newest_kid
    assert header["purpose"] == "auth_code"


def test_wrong_purpose_is_refused(ring):
    sealed = ring.seal(b"code", purpose="auth_code")
    with pytest.raises(SealingError, match="purpose"):
        ring.open(sealed, purpose="token_cache")


def test_purpose_rewritten_in_header_fails_authentication(ring):
    """Editing the header's purpose breaks GCM's tag: the header is authenticated data."""
    parts = ring.seal(b"code", purpose="auth_code").split(".")
    header = json.loads(_unb64(parts[0]))
    header["purpose"] = "token_cache"
    parts[0] = _b64(json.dumps(header).encode())
    with pytest.raises(SealingError):
        ring.open(".".join(parts), purpose="token_cache")


@pytest.mark.parametrize("part", [1, 2, 3, 4])
def test_tampering_any_part_is_refused(ring, part):
    parts = ring.seal(b"secret", purpose="p").split(".")
    raw = bytearray(_unb64(parts[part]))
    raw[0] ^= 0x01
    parts[part] = _b64(bytes(raw))
    with pytest.raises(SealingError):
        ring.open(".".join(parts), purpose="p")


def test_garbage_is_refused(ring):
    with pytest.raises(SealingError):
        ring.open("not-a-jwe", purpose="p")


def test_unknown_kid_is_refused(tmp_path, ring):
    other = Keyring.load_or_create(tmp_path / "other.json")
    sealed = other.seal(b"x", purpose="p")
    with pytest.raises(SealingError, match="unknown key id"):
        ring.open(sealed, purpose="p")


def test_rotation_keeps_old_keys_opening_and_seals_with_newest(tmp_path, ring):
    old = ring.seal(b"old", purpose="p")
    first = ring.newest_kid
    new_kid = ring.rotate()
    assert new_kid != first
    assert ring.kids == [first, new_kid]
    assert ring.open(old, purpose="p") == b"old"
    fresh = ring.seal(b"new", purpose="p")
    assert json.loads(_unb64(fresh.split(".")[0]))["kid"] == new_kid
    # and the rotation was persisted
    again = Keyring.load_or_create(tmp_path / "keys.json")
    assert again.kids == [first, new_kid]
    assert again.open(old, purpose="p") == b"old"


def test_reseal_moves_to_newest_key(ring):
    old = ring.seal(b"cache", purpose="token_cache")
    ring.rotate()
    resealed = ring.reseal(old, "token_cache")
    assert json.loads(_unb64(resealed.split(".")[0]))["kid"] == ring.newest_kid
    assert ring.open(resealed, purpose="token_cache") == b"cache"
    assert ring.reseal(resealed, "token_cache") == resealed
    with pytest.raises(SealingError):
        ring.reseal(old, "auth_code")


def test_public_party_can_seal_for_the_ring(ring):
    jwks = ring.public_jwks()
    public = jwks["keys"][-1]
    assert "d" not in public
    assert public["kid"] == ring.newest_kid
    sealed = seal_to_public_jwk(public, b"authorization-code", "auth_code")
    assert ring.open(sealed, purpose="auth_code") == b"authorization-code"


def test_seal_to_public_jwk_needs_kid_and_purpose(ring):
    public = dict(ring.public_jwks()["keys"][0])
    with pytest.raises(SealingError):
        seal_to_public_jwk(public, b"x", "")
    public.pop("kid")
    with pytest.raises(SealingError, match="kid"):
        seal_to_public_jwk(public, b"x", "p")


def test_key_file_is_private(tmp_path, ring):
    path = tmp_path / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring.rotate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all("d" in key for key in json.loads(path.read_text())["keys"])


def test_world_readable_key_file_is_refused(tmp_path, ring):
    path = tmp_path / "keys.json"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Keyring.load_or_create(path)


def test_public_only_key_file_is_refused(tmp_path, ring):
    path = tmp_path / "public.json"
    path.write_text(json.dumps(ring.public_jwks()))
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="private"):
        Keyring.load_or_create(path)

"""The command line as an operator runs it: separate processes, a written configuration,
the emulator's CA given in the configuration while REQUESTS_CA_BUNDLE points elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def m365sync(stack, *args, check=True, env_extra=None):
    env = dict(os.environ)
    env.pop("M365SYNC_CONFIG", None)
    env["COLUMNS"] = "200"
    env.update(env_extra or {})
    result = subprocess.run(
        [sys.executable, "-m", "m365sync", "-c", str(stack.config_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_connect_sync_status_check_config(stack):
    # The system bundle cannot verify the emulator: only the configured ca_bundle can.
    env = {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    checked = m365sync(stack, "check-config", env_extra=env)
    assert "problem" not in checked.stdout
    assert "identity platform" in checked.stdout

    connected = m365sync(stack, "connect", env_extra=env)
    assert "Connected" in connected.stdout

    synced = m365sync(stack, "sync", "--once", env_extra=env)
    assert "Sync cycle" in synced.stdout and "ok" in synced.stdout

    status = m365sync(stack, "status")
    assert stack.emulator.mailbox.user["mail"].lower() in status.stdout.lower()
    assert "active" in status.stdout


def test_config_errors_are_one_sentence(stack, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('[microsoft]\nclient_id = ""\n')
    result = subprocess.run(
        [sys.executable, "-m", "m365sync", "-c", str(broken), "sync", "--once"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "client_id is empty" in result.stderr
    assert "Traceback" not in result.stderr


def test_sync_with_revoked_grant_exits_nonzero_and_says_reconnect(stack):
    m365sync(stack, "connect")
    stack.emulator.identity.revoke_grants()
    stack.emulator.identity.expire_access_tokens()
    result = m365sync(stack, "sync", "--once", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    status = m365sync(stack, "status")
    assert "needs reconnect" in status.stdout


def _config_with(stack, tmp_path, name, **values):
    """The stack's configuration with some [microsoft] values replaced."""
    import re

    text = stack.config_path.read_text(encoding="utf-8")
    for key, value in values.items():
        text, found = re.subn(rf'(?m)^{key} = "[^"]*"$', f'{key} = "{value}"', text)
        assert found == 1, key
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _words(text):
    """Console output as one line of words: table borders and wrapping taken out."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


def m365sync_with(config, *args):
    env = dict(os.environ)
    env.pop("M365SYNC_CONFIG", None)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "m365sync", "-c", str(config), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_identity_platform_down_is_named_and_urllib3_retries_stay_quiet(stack, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    m365sync(stack, "connect")
    stack.emulator.identity.expire_access_tokens()  # the cycle must ask the identity platform
    dead = f"https://127.0.0.1:{port}"  # nothing listens there
    down = _config_with(stack, tmp_path, "identity-down.toml", authority_host=dead)

    synced = m365sync_with(down, "sync", "--once")
    assert synced.returncode == 1
    said = _words(synced.stdout + synced.stderr)
    assert "Retrying" not in said  # urllib3's own retry warnings are not the operator's words
    assert "identity platform" in said and dead in said
    assert "Microsoft Graph failed" not in said and "service health" not in said
    assert "Traceback" not in said

    connected = m365sync_with(down, "connect")
    assert connected.returncode == 2
    said = _words(connected.stdout + connected.stderr)
    assert "Retrying" not in said
    assert "identity platform" in said and dead in said


def test_connect_with_a_ca_bundle_that_does_not_sign_the_authority_names_the_setting(
    stack, tmp_path
):
    import trustme

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))  # a CA that signed nothing here
    wrong = _config_with(stack, tmp_path, "wrong-ca.toml", ca_bundle=str(other_ca))
    connected = m365sync_with(wrong, "connect")
    assert connected.returncode == 2
    said = _words(connected.stdout + connected.stderr)
    assert "microsoft.ca_bundle" in said  # what check-config says too
    assert "check the authority URL" not in said
    checked = _words(m365sync_with(wrong, "check-config").stdout)
    assert "set microsoft.ca_bundle to the CA that signed it" in checked

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

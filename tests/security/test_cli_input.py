"""Hostile or broken input on the command line: every failure is one sentence, never a
traceback, and a non-zero exit.

Each test is named after the bad input. All of them run the real entry point
(``python -m m365sync``) in a separate process, as an operator (or an attacker with a shell)
would, and read what it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("M365SYNC_")}
    env["HOME"] = str(cwd)  # the default data directory, were anything to fall back to it
    env["COLUMNS"] = "1000"  # long paths stay whole in the sentence
    return subprocess.run(
        [sys.executable, "-m", "m365sync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def refused(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    """The one sentence the CLI printed, once it is known to be one and to name ``phrases``."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, result.stdout + result.stderr
    sentence = " ".join(result.stderr.split())
    assert sentence.startswith("Error: "), result.stderr
    assert sentence.count("Error:") == 1, result.stderr
    for phrase in phrases:
        assert phrase in sentence, sentence
    return sentence


def write_config(tmp_path: Path, **sections: dict[str, object]) -> Path:
    """A configuration that validates, with ``sections`` merged in (a value of None drops the
    key): every file under ``tmp_path``, every endpoint on a closed loopback port, so
    check-config answers at once and nothing leaves the machine."""
    values: dict[str, dict[str, object]] = {
        "microsoft": {
            "client_id": "11111111-2222-3333-4444-555555555555",
            "client_secret": "not-a-secret",
            "authority_host": "https://127.0.0.1:9",
            "graph_base_url": "https://127.0.0.1:9/v1.0",
        },
        "store": {"path": str(tmp_path / "store.sqlite3")},
        "keys": {"path": str(tmp_path / "keys.jwks")},
    }
    for name, changes in sections.items():
        values.setdefault(name, {}).update(changes)
    lines = []
    for name, section in values.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in section.items() if v is not None]
    path = tmp_path / "m365sync.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- the configuration file ---------------------------------------------------------------


def test_binary_configuration_file(tmp_path):
    config = tmp_path / "m365sync.toml"
    config.write_bytes(b"\xff\xfe\x00\x80binary\x00\x9f")
    sentence = refused(run("-c", str(config), "check-config", cwd=tmp_path), "not UTF-8 text")
    assert str(config) in sentence


def test_markup_in_a_configuration_value(tmp_path):
    # The sentence quotes the value; the console must print it, not parse it as markup.
    config = write_config(tmp_path, store={"backend": "[/]x"})
    refused(run("-c", str(config), "check-config", cwd=tmp_path), "store.backend", "'[/]x'")


def test_store_path_in_a_folder_that_does_not_exist(tmp_path):
    typo = tmp_path / "srv" / "m365synk" / "store.sqlite3"
    config = write_config(tmp_path, store={"path": str(typo)})
    sentence = refused(
        run("-c", str(config), "check-config", cwd=tmp_path), "folder that does not exist"
    )
    assert str(typo) in sentence
    assert not typo.parent.exists(), "the folder was created anyway"


@pytest.mark.parametrize("seconds", [0, -5], ids=["zero", "negative"])
def test_mail_interval_of_zero_or_less(tmp_path, seconds):
    config = write_config(tmp_path, sync={"mail_interval_seconds": seconds})
    refused(
        run("-c", str(config), "check-config", cwd=tmp_path),
        "sync.mail_interval_seconds must be 1 second or more",
    )


def test_outbox_interval_of_zero(tmp_path):
    config = write_config(tmp_path, sync={"outbox_interval_seconds": 0})
    refused(
        run("-c", str(config), "check-config", cwd=tmp_path),
        "sync.outbox_interval_seconds must be 1 second or more",
    )


def test_markup_in_a_path_check_config_reports(tmp_path):
    # check-config's table quotes the failing path too.
    missing = tmp_path / "[/]secret"
    config = write_config(
        tmp_path, microsoft={"client_secret": None, "client_secret_file": str(missing)}
    )
    result = run("-c", str(config), "check-config", cwd=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2
    assert "[/]secret" in " ".join(result.stdout.split())


# --- m365sync meet ------------------------------------------------------------------------


def meet(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path)
    base = ["--attendee", "dana@fabrikam.com", "--subject", "Offer"]
    if "--start" not in args:
        base += ["--start", "2026-12-01T10:00"]
    return run("-c", str(config), "meet", *base, *args, cwd=tmp_path)


def test_meet_time_zone_that_does_not_exist(tmp_path):
    refused(
        meet(tmp_path, "--time-zone", "Mars/Olympus"),
        "--time-zone 'Mars/Olympus' is not a time zone",
        "IANA",
    )


def test_meet_time_zone_by_its_windows_name(tmp_path):
    refused(
        meet(tmp_path, "--time-zone", "W. Europe Standard Time"),
        "not an IANA zone name",
        "'Europe/Berlin'",
    )


def test_meet_empty_time_zone(tmp_path):
    refused(meet(tmp_path, "--time-zone", ""), "--time-zone is empty")


def test_meet_time_zone_that_is_a_path(tmp_path):
    refused(meet(tmp_path, "--time-zone", "../../../etc/passwd"), "is not a time zone")


def test_meet_start_tomorrow(tmp_path):
    refused(
        meet(tmp_path, "--start", "tomorrow"),
        "--start 'tomorrow' is not a date and time",
        "2026-12-01T10:00",
    )


def test_meet_start_with_markup(tmp_path):
    refused(meet(tmp_path, "--start", "[/]"), "--start '[/]'")


@pytest.mark.parametrize("minutes", ["-30", "0"], ids=["negative", "zero"])
def test_meet_minutes_of_zero_or_less(tmp_path, minutes):
    refused(meet(tmp_path, "--minutes", minutes), f"--minutes {minutes} is not a length")


def test_meet_minutes_past_the_year_9999(tmp_path):
    refused(
        meet(tmp_path, "--start", "9999-12-31T23:00", "--minutes", "120"), "past the year 9999"
    )


# --- m365sync emulator --mailbox FILE -----------------------------------------------------


def emulator(tmp_path: Path, content: bytes) -> subprocess.CompletedProcess[str]:
    mailbox = tmp_path / "mailbox.json"
    mailbox.write_bytes(content)
    return run(
        "emulator",
        "--mailbox",
        str(mailbox),
        "--port",
        "0",
        "--state-dir",
        str(tmp_path / "emulator"),
        cwd=tmp_path,
        timeout=30,  # the emulator would serve forever if it accepted the file
    )


def event(**changes: object) -> dict[str, object]:
    value: dict[str, object] = {
        "subject": "Review",
        "start": {"dateTime": "2026-12-01T10:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2026-12-01T11:00:00", "timeZone": "Europe/Paris"},
    }
    value.update(changes)
    return value


def test_mailbox_truncated_json(tmp_path):
    whole = json.dumps({"messages": [{"subject": "Offer", "body": {"content": "hello"}}]})
    refused(emulator(tmp_path, whole[:30].encode()), "mailbox.json' is not valid JSON", "truncated")


def test_mailbox_binary_file(tmp_path):
    refused(emulator(tmp_path, b"\x89PNG\r\n\x1a\n\x00\xff\xfe"), "is not UTF-8 text")


def test_mailbox_empty_file(tmp_path):
    refused(emulator(tmp_path, b""), "mailbox.json' is empty")


def test_mailbox_json_array_instead_of_an_object(tmp_path):
    refused(
        emulator(tmp_path, b'[{"subject": "Offer"}]'), "holds an array where an object is expected"
    )


def test_mailbox_deeply_nested_json(tmp_path):
    refused(emulator(tmp_path, b"[" * 200_000), "nested too deeply")


def test_mailbox_message_nested_too_deeply(tmp_path):
    text = '{"messages": [{"subject": "x", "extra": ' + "[" * 600 + "]" * 600 + "}]}"
    refused(emulator(tmp_path, text.encode()), "messages[0] ('x')", "nested too deeply")


def test_mailbox_event_in_an_unknown_time_zone(tmp_path):
    start = {"dateTime": "2026-12-01T10:00:00", "timeZone": "Mars/Olympus"}
    document = {"events": [event(start=start)]}
    refused(
        emulator(tmp_path, json.dumps(document).encode()),
        "events[0] ('Review')",
        "start.timeZone 'Mars/Olympus' is not a time zone",
    )


def test_mailbox_event_with_a_garbage_datetime(tmp_path):
    end = {"dateTime": "soon-ish", "timeZone": "UTC"}
    document = {"events": [event(), event(end=end)]}
    refused(
        emulator(tmp_path, json.dumps(document).encode()),
        "events[1] ('Review')",
        "end.dateTime 'soon-ish' is not a date and time",
    )


@pytest.mark.parametrize("section", ["messages", "events"])
def test_mailbox_lone_surrogate(tmp_path, section):
    item = event(subject="x") if section == "events" else {"subject": "x"}
    # json.dumps writes "\ud800" as the six-character escape, which json.load turns into a
    # lone surrogate: a str Python holds but UTF-8 (and Graph's JSON) cannot carry.
    text = json.dumps({section: [item]}).replace('"x"', '"\\ud800 invoice"')
    refused(emulator(tmp_path, text.encode()), f"{section}[0]", "unpaired UTF-16 surrogate")


def test_emulator_negative_size(tmp_path):
    result = run("emulator", "--size", "-1", "--state-dir", str(tmp_path / "e"), cwd=tmp_path)
    refused(result, "--size -1 is out of range")


# --- m365sync send ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["missing.pdf", "."], ids=["missing", "a-folder"])
def test_send_attachment_that_is_not_a_readable_file(tmp_path, name):
    config = write_config(tmp_path)
    args = ["--to", "dana@fabrikam.com", "--subject", "Offer", "--body", "<p>Hi</p>"]
    result = run("-c", str(config), "send", *args, "--attach", name, cwd=tmp_path)
    refused(result, f"--attach '{name}' cannot be read")

"""Configuration: file, environment overrides, and one-sentence errors."""

from __future__ import annotations

from datetime import date

import pytest

from m365sync.config import load_config
from m365sync.errors import ConfigError

GOOD = """
[microsoft]
client_id = "app"
client_secret = "s3cret"
tenant = "contoso.onmicrosoft.com"
authority_host = "https://login.microsoftonline.us"
graph_base_url = "https://graph.microsoft.us/v1.0"
client_secret_expires = 2027-03-01

[sync]
mail_folders = ["inbox", "sentitems", "archive"]
initial_window_days = 30
"""


def write(tmp_path, text):
    path = tmp_path / "m365sync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_values_reach_every_section(tmp_path):
    config = load_config(write(tmp_path, GOOD), environ={}).validate()
    assert config.microsoft.authority == "https://login.microsoftonline.us/contoso.onmicrosoft.com"
    assert config.microsoft.is_microsoft_cloud
    assert config.microsoft.client_secret_expires == date(2027, 3, 1)
    assert config.sync.mail_folders == ("inbox", "sentitems", "archive")
    assert config.sync.initial_window_days == 30


def test_environment_overrides_file(tmp_path):
    env = {
        "M365SYNC_MICROSOFT__CLIENT_ID": "other",
        "M365SYNC_SYNC__MAIL_FOLDERS": "inbox, junkemail",
        "M365SYNC_SYNC__INCLUDE_CHILD_FOLDERS": "yes",
        "M365SYNC_STORE__PATH": str(tmp_path / "x.sqlite3"),
    }
    config = load_config(write(tmp_path, GOOD), environ=env).validate()
    assert config.microsoft.client_id == "other"
    assert config.sync.mail_folders == ("inbox", "junkemail")
    assert config.sync.include_child_folders is True
    assert config.store.sqlite_path() == tmp_path / "x.sqlite3"


def test_config_path_from_environment(tmp_path):
    path = write(tmp_path, GOOD)
    assert load_config(environ={"M365SYNC_CONFIG": str(path)}).microsoft.client_id == "app"


def test_emulator_host_is_not_a_microsoft_cloud(tmp_path):
    config = load_config(environ={"M365SYNC_MICROSOFT__AUTHORITY_HOST": "https://127.0.0.1:8443"})
    assert not config.microsoft.is_microsoft_cloud


def test_secret_file_wins_and_missing_file_is_one_sentence(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    config = load_config(environ={"M365SYNC_MICROSOFT__CLIENT_SECRET_FILE": str(secret)})
    assert config.microsoft.secret() == "from-file"
    config = load_config(environ={"M365SYNC_MICROSOFT__CLIENT_SECRET_FILE": str(tmp_path / "no")})
    with pytest.raises(ConfigError, match=r"Cannot read microsoft\.client_secret_file"):
        config.microsoft.secret()


@pytest.mark.parametrize(
    ("text", "env", "words"),
    [
        ("", {}, "microsoft.client_id is empty"),
        ('[microsoft]\nclient_id = "a"\n', {}, "No client secret"),
        (GOOD + '\n[store]\nbackend = "mysql"\n', {}, "store.backend must be"),
        ("[microsoft\n", {}, "is not valid TOML"),
        ("[nonsense]\n", {}, "Unknown section [nonsense]"),
        ('[sync]\nfolders = ["x"]\n', {}, "Unknown setting sync.folders"),
        (GOOD, {"M365SYNC_SYNC__PAGE_SIZE": "many"}, "sync.page_size has an invalid value"),
        (GOOD, {"M365SYNC_SYNC__PAGE_SIZE": "5000"}, "between 1 and 1000"),
        (GOOD, {"M365SYNC_MICROSOFT__GRAPH_BASE_URL": "http://graph"}, "must be an https:// URL"),
        (GOOD, {"M365SYNC_MICROSOFT__SCOPES": "Mail.Read,offline_access"}, "must not list"),
        (GOOD, {"M365SYNC_MICROSOFT__CA_BUNDLE": "/nope.pem"}, "is not a readable file"),
        (GOOD, {"M365SYNC_STORE__BACKEND": "odoo"}, "odoo.url is empty"),
    ],
)
def test_errors_name_the_setting(tmp_path, text, env, words):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=env).validate()
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})

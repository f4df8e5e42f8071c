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
        (GOOD, {"M365SYNC_SYNC__MAIL_INTERVAL_SECONDS": "0"}, "mail_interval_seconds must be 1"),
        (GOOD, {"M365SYNC_SYNC__MAIL_INTERVAL_SECONDS": "-60"}, "mail_interval_seconds must be 1"),
        (GOOD, {"M365SYNC_SYNC__OUTBOX_INTERVAL_SECONDS": "0"}, "outbox_interval_seconds must"),
        (
            GOOD,
            {"M365SYNC_STORE__PATH": "/nonexistent-m365sync/store.sqlite3"},
            "is in a folder that does not exist ('/nonexistent-m365sync')",
        ),
        (GOOD, {"M365SYNC_STORE__PATH": "/"}, "is a folder: name the store file in it"),
    ],
)
def test_errors_name_the_setting(tmp_path, text, env, words):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=env).validate()
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_binary_file_is_reported(tmp_path):
    path = tmp_path / "m365sync.toml"
    path.write_bytes(b"\xff\xfe\x00[microsoft]\x80")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path, environ={})


def test_default_store_folder_is_not_required_to_exist(tmp_path, monkeypatch):
    # The default location is the daemon's own data directory: the store creates it.
    monkeypatch.setattr("m365sync.config.default_data_dir", lambda: tmp_path / "new" / "dir")
    config = load_config(write(tmp_path, GOOD), environ={}).validate()
    assert config.store.sqlite_path() == tmp_path / "new" / "dir" / "store.sqlite3"


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})


# --- [notifications] and [service] ------------------------------------------------------------


def test_notifications_and_service_sections(tmp_path):
    text = GOOD + """
[notifications]
url = "https://crm.contoso.com/m365/notifications"
listen_port = 8443
safety_poll_seconds = 3600

[service]
workers = 3
tick_seconds = 2.5
holder = "replica-a"
"""
    env = {"M365SYNC_SERVICE__WORKERS": "5", "M365SYNC_NOTIFICATIONS__ENABLED": "off"}
    config = load_config(write(tmp_path, text), environ=env).validate()
    assert config.notifications.url == "https://crm.contoso.com/m365/notifications"
    assert config.notifications.listen_port == 8443
    assert config.notifications.enabled is False
    assert config.service.workers == 5  # the environment wins over the file
    assert config.service.tick_seconds == 2.5

    from m365sync.service.daemon import ServiceOptions

    options = ServiceOptions.from_config(config.service, workers=None, health_port=0)
    assert (options.workers, options.holder, options.health_port) == (5, "replica-a", 0)
    assert ServiceOptions.from_config(load_config(environ={}).service).holder  # host:pid


@pytest.mark.parametrize(
    ("section", "sentence"),
    [
        ('url = "http://crm.contoso.com/hook"', "notifications.url must be an https:// URL"),
        ('lifecycle_url = "crm/hook"', "notifications.lifecycle_url is not a URL"),
        ("safety_poll_seconds = 60", "safety_poll_seconds must be at least"),
    ],
)
def test_bad_notification_settings_say_which(tmp_path, section, sentence):
    config = load_config(write(tmp_path, GOOD + "\n[notifications]\n" + section), environ={})
    with pytest.raises(ConfigError, match=sentence):
        config.validate()


def test_plain_http_notifications_only_outside_microsoft_clouds(tmp_path):
    text = """
[microsoft]
client_id = "app"
client_secret = "s"
authority_host = "https://127.0.0.1:8443"
graph_base_url = "https://127.0.0.1:8443/v1.0"

[notifications]
url = "http://127.0.0.1:9000/"
"""
    assert load_config(write(tmp_path, text), environ={}).validate().notifications.url


def test_service_workers_must_be_positive(tmp_path):
    from m365sync.service.daemon import ServiceOptions

    config = load_config(write(tmp_path, GOOD + "\n[service]\nworkers = 0\n"), environ={})
    with pytest.raises(ConfigError, match="must be positive"):
        ServiceOptions.from_config(config.service)

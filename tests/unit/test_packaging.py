"""The deployment files, checked without Docker or systemd (neither runs on the development
machines): they parse, name files that exist, and configure the daemon with settings it accepts.
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import yaml

from m365sync.cli import build_parser
from m365sync.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_runs_postgres_odoo_with_the_addon_and_the_daemon():
    services = compose()["services"]
    assert set(services) == {"db", "odoo", "m365sync"}
    assert services["db"]["image"].startswith("postgres:")
    odoo = services["odoo"]
    assert "./addon:/mnt/extra-addons:ro" in odoo["volumes"]
    assert odoo["environment"]["HOST"] == "db"
    for name in ("odoo", "m365sync"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert services["m365sync"]["depends_on"] == ["odoo"]


def test_the_daemon_service_environment_is_a_valid_odoo_configuration(tmp_path):
    """Every variable the compose file gives the daemon is a setting it knows, and together
    they pass validation (the secret files stand in for the compose secrets)."""
    daemon = compose()["services"]["m365sync"]
    secrets = {name: tmp_path / name for name in daemon["secrets"]}
    for path in secrets.values():
        path.write_text("value\n", encoding="utf-8")
    environ = {}
    for key, value in daemon["environment"].items():
        value = str(value)
        value = re.sub(
            r"\$\{(\w+):[-?]([^}]*)\}",
            lambda m: "app-id" if m[1] == "M365_CLIENT_ID" else m[2],
            value,
        )
        for name, path in secrets.items():
            value = value.replace(f"/run/secrets/{name}", str(path))
        environ[key] = value
    config = load_config(environ=environ).validate()
    assert config.store.backend == "odoo"
    assert config.odoo.url == "http://odoo:8069"
    assert config.odoo.key() == "value"
    assert config.microsoft.secret() == "value"


def test_the_odoo_image_installs_the_addons_external_dependencies():
    manifest = ast.literal_eval(
        (ROOT / "addon/crm_microsoft365/__manifest__.py").read_text(encoding="utf-8")
    )
    dockerfile = (ROOT / "docker/odoo.Dockerfile").read_text(encoding="utf-8")
    first = next(line for line in dockerfile.splitlines() if line.startswith("FROM"))
    assert first == "FROM odoo:18"
    for package in manifest["external_dependencies"]["python"]:
        assert f"python3-{package}" in dockerfile


def test_the_daemon_image_runs_the_service():
    dockerfile = (ROOT / "docker/daemon.Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["m365sync"]' in dockerfile
    assert 'CMD ["run"]' in dockerfile
    assert build_parser().parse_args(["run"]).handler.__name__ == "cmd_run"


def test_the_systemd_unit_is_a_notify_service_with_a_watchdog():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(ROOT / "packaging/systemd/m365sync.service", encoding="utf-8")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["KillSignal"] == "SIGTERM"
    argv = service["ExecStart"].split()
    assert argv[0] == "/usr/bin/m365sync"
    parsed = build_parser().parse_args(argv[1:])
    assert parsed.handler.__name__ == "cmd_run" and parsed.log_json

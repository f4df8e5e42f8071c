"""Running Odoo from a source tree against the private cluster: install, test, shell, serve.

Every command is ``odoo-bin`` from ``ODOO_SRC`` in Odoo's own venv, with the cluster's socket,
a data folder of the run's own (filestore, sessions) and an addons path of the tree's addons
plus this repository's ``addon/``. Test runs stream Odoo's log through a watchdog: a test that
makes no progress for ``test_timeout`` seconds is killed and named, instead of hanging CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .postgres import PgCluster, free_port
from .testlog import STARTING, TestLog, parse_test_log, records

REPO = Path(__file__).resolve().parents[2]
ADDONS = REPO / "addon"
MODULE = "crm_microsoft365"  # the addon a database gets; glue modules follow it (auto_install)
#: What a CRM database has before our addon: the CRM app and Odoo's own Outlook calendar.
CRM_MODULES = ("contacts", "calendar", "mail", "crm", "microsoft_calendar")
#: The smallest database the addon installs in.
BARE_MODULES = ("contacts", "calendar", "mail")


#: `odoo-bin shell` gives the daemon's technical user an API key and prints it after a marker
#: (Odoo's shell echoes results only to a TTY).
API_KEY_SCRIPT = """
user = env.ref("crm_microsoft365.user_m365_daemon")
key = env["res.users.apikeys"].with_user(user).sudo()._generate("rpc", "m365sync", None)
env.cr.commit()
print("M365-API-KEY=" + key)
"""


def addon_modules(folder: Path = ADDONS) -> tuple[str, ...]:
    """The repository's addons (folders with a manifest): their tests run together."""
    return tuple(sorted(p.parent.name for p in folder.glob("*/__manifest__.py")))


class OdooError(RuntimeError):
    """An Odoo command failed; the message holds the command's last log lines."""


def find_odoo_src(environ: dict[str, str] | None = None) -> Path | None:
    """The Odoo tree named by ``ODOO_SRC``, or None when none is configured."""
    value = (environ if environ is not None else os.environ).get("ODOO_SRC", "").strip()
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not (path / "odoo-bin").is_file():
        raise OdooError(f"ODOO_SRC={value} is not an Odoo source tree (no odoo-bin in it)")
    return path


def ensure_chromium() -> str | None:
    """Chromium for the browser tours: found on PATH, else installed from Debian when we are
    root (``apt-get``). Returns its path, or None when it cannot be had here."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        subprocess.run(command, env=env, capture_output=True, check=False, timeout=900)
    return shutil.which("chromium")


@dataclass
class OdooRun:
    """One finished ``odoo-bin`` run: its exit code, its log, and the watchdog's verdict."""

    command: list[str]
    returncode: int
    log: str
    seconds: float
    hung_in: str | None = None  # the test that made no progress, when the watchdog killed it
    timed_out: bool = False

    def errors(self) -> list[str]:
        """ERROR and CRITICAL records, with their tracebacks."""
        return [r.text for r in records(self.log) if r.level in ("ERROR", "CRITICAL")]

    def warnings(self) -> list[str]:
        return [r.text for r in records(self.log) if r.level == "WARNING"]

    def tests(self, modules: tuple[str, ...] | None = None) -> TestLog:
        return parse_test_log(self.log, modules or addon_modules())

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def check(self, what: str) -> OdooRun:
        """Raise with the log's end unless Odoo exited 0 without error records."""
        if self.hung_in or self.timed_out:
            where = f" in {self.hung_in}" if self.hung_in else ""
            raise OdooError(f"{what}: Odoo hung{where} and was stopped\n{self.tail()}")
        if self.returncode or self.errors():
            detail = "\n".join(self.errors()[:5]) or self.tail()
            raise OdooError(f"{what}: exit {self.returncode}\n{detail}")
        return self


@dataclass
class OdooTree:
    """An Odoo source tree, its interpreter and the private cluster it runs against."""

    src: Path
    python: Path
    pg: PgCluster
    data_dir: Path
    extra_addons: list[Path] = field(default_factory=lambda: [ADDONS])
    served: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def addons_path(self) -> str:
        paths = [self.src / "addons", self.src / "odoo" / "addons", *self.extra_addons]
        return ",".join(str(p) for p in paths if p.is_dir())

    def command(self, db: str, *args: str, subcommand: str | None = None) -> list[str]:
        """``odoo-bin [subcommand]`` on the private cluster, the run's data folder and addons."""
        return [
            str(self.python),
            str(self.src / "odoo-bin"),
            *([subcommand] if subcommand else []),
            f"--db_host={self.pg.host}",
            f"--db_port={self.pg.port}",
            f"--db_user={self.pg.user}",
            f"--data-dir={self.data_dir}",
            f"--addons-path={self.addons_path}",
            "-d",
            db,
            "--without-demo=all",
            "--log-level=info",
            *args,
        ]

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        return env | {"PYTHONUNBUFFERED": "1", "PGAPPNAME": "m365-odoo-tests"}

    # --- one-shot runs ---------------------------------------------------------------------

    def run(
        self,
        db: str,
        *args: str,
        timeout: float = 900,
        test_timeout: float | None = None,
        log_path: Path | None = None,
        stdin: str | None = None,
        subcommand: str | None = None,
    ) -> OdooRun:
        """``odoo-bin`` with ``args`` (``--stop-after-init`` is the caller's), watched.

        ``test_timeout``: the most seconds one test may run; over it the run is killed and
        the test named (`OdooRun.hung_in`). ``timeout`` bounds the whole run."""
        command = self.command(db, *args, subcommand=subcommand)
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.environ(),
            cwd=self.data_dir,
            start_new_session=True,
        )
        lines: list[str] = []
        progress = {"test": None, "since": time.monotonic()}

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                message = line.strip().split(": ", 1)[-1]
                if started_test := STARTING.match(message):
                    progress["test"] = f"{started_test['cls']}.{started_test['method']}"
                    progress["since"] = time.monotonic()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        if stdin is not None:
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(stdin)
                process.stdin.close()
        hung_in, timed_out = None, False
        while process.poll() is None:
            now = time.monotonic()
            if test_timeout and progress["test"] and now - progress["since"] > test_timeout:
                hung_in = progress["test"]
            elif now - started > timeout:
                timed_out = True
            if hung_in or timed_out:
                _kill_group(process)
                break
            time.sleep(0.2)
        process.wait()
        reader.join(timeout=10)
        log = "".join(lines)
        if log_path:
            log_path.write_text(log)
        seconds = time.monotonic() - started
        return OdooRun(command, process.returncode, log, seconds, hung_in, timed_out)

    def install(self, db: str, modules: tuple[str, ...] | list[str], **kw) -> OdooRun:
        """A fresh database with ``modules`` (or those added to an existing one)."""
        return self.run(db, "-i", ",".join(modules), "--stop-after-init", **kw)

    def test(self, db: str, module: str = MODULE, *, install: bool = True, **kw) -> OdooRun:
        """The tests of every addon of this repository that the database gets (``module`` and
        the glue modules that follow it), browser tours included, run as Odoo runs them at
        install (``-i``) or upgrade (``-u``) of ``module``."""
        flag = "-i" if install else "-u"
        tags = ",".join(f"/{name}" for name in addon_modules())
        return self.run(
            db,
            flag,
            module,
            "--test-enable",
            f"--test-tags={tags}",
            "--stop-after-init",
            "--http-port",
            str(free_port()),
            **kw,
        )

    def shell(self, db: str, script: str, timeout: float = 300) -> OdooRun:
        """Python run by ``odoo-bin shell`` with ``env`` bound (its stdout is in the log)."""
        return self.run(db, "--no-http", stdin=script, timeout=timeout, subcommand="shell")

    def daemon_api_key(self, db: str) -> str:
        """A new API key (no expiry) for the addon's technical user ``m365sync``."""
        run = self.shell(db, API_KEY_SCRIPT)
        for line in run.log.splitlines():
            if line.startswith("M365-API-KEY="):
                return line.split("=", 1)[1].strip()
        raise OdooError(f"odoo-bin shell printed no API key:\n{run.tail()}")

    def copy_db(self, source: str, target: str) -> None:
        """A new database ``target`` as a copy of ``source`` (data and filestore): a fresh
        install made once serves several tests."""
        self.pg.psql(f'CREATE DATABASE "{target}" WITH TEMPLATE "{source}"')
        filestore = self.data_dir / "filestore"
        if (filestore / source).is_dir():
            shutil.copytree(filestore / source, filestore / target)
        # A copy keeps the source's uuid; Odoo's own duplicate makes a new one.
        self.pg.psql(
            "UPDATE ir_config_parameter SET value = gen_random_uuid()::text "
            "WHERE key = 'database.uuid'",
            db=target,
        )

    # --- serving ---------------------------------------------------------------------------

    def serve(self, db: str, port: int | None = None, *, timeout: float = 120) -> str:
        """Serve ``db`` over HTTP on loopback (one database: ``--db-filter``); returns its URL
        once the login page answers."""
        port = port or free_port()
        log = (self.data_dir / f"serve-{db}.log").open("w")
        process = subprocess.Popen(
            self.command(
                db,
                f"--http-port={port}",
                "--http-interface=127.0.0.1",
                f"--db-filter=^{db}$",
                "--workers=0",
                "--max-cron-threads=0",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environ(),
            cwd=self.data_dir,
            start_new_session=True,
        )
        self.served[db] = process
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise OdooError(
                    f"Odoo serving {db} exited {process.returncode}:\n"
                    + (self.data_dir / f"serve-{db}.log").read_text()[-3000:]
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{url}/web/login", timeout=5) as answer,  # noqa: S310
            ):
                if answer.status == 200:
                    return url
            time.sleep(0.5)
        self.stop_serving(db)
        raise OdooError(f"Odoo serving {db} did not answer within {timeout:.0f} s")

    def served_log(self, db: str) -> str:
        path = self.data_dir / f"serve-{db}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_serving(self, db: str | None = None) -> None:
        for name in [db] if db else list(self.served):
            process = self.served.pop(name, None)
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    """Odoo and what it started (the tours' chromium)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)

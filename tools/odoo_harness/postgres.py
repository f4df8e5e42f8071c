"""A PostgreSQL cluster of the run's own: initdb in a temporary folder, its own socket and port,
stopped and removed at the end.

It never touches the system cluster or a user's database. initdb refuses to run as root, so as
root the cluster belongs to the ``postgres`` user (``runuser``); otherwise to the caller. A run
killed outright (SIGKILL) leaves its folder behind: the next cluster removes those whose owning
process is gone (`sweep_stale`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PREFIX = "m365-odoo-pg-"
OWNER_FILE = "owner.pid"


class PostgresError(RuntimeError):
    """The private cluster could not be started; the message says why."""


def pg_bindir() -> Path:
    """PostgreSQL's server binaries: ``$PG_BINDIR``, else the newest /usr/lib/postgresql/N/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        raise PostgresError(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "install the postgresql package or set PG_BINDIR"
        )
    return versions[-1].parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sweep_stale(tmp: Path | None = None) -> list[Path]:
    """Remove clusters left by runs that died without stopping them; returns what was removed."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        data = folder / "data"
        if (data / "postmaster.pid").exists():
            PgCluster._pg_ctl_as(_owner_of(folder), pg_bindir(), "stop", data, "-m", "immediate")
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_of(folder: Path) -> str | None:
    try:
        return pwd.getpwuid(folder.stat().st_uid).pw_name if os.geteuid() == 0 else None
    except KeyError:
        return None


class PgCluster:
    """One throwaway cluster; `start` then `stop` (or use it as a context manager)."""

    user = "odoo"  # the database role Odoo connects as (initdb -U)

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix=PREFIX))
        self.data = self.root / "data"
        self.port = free_port()
        self.bindir = pg_bindir()
        self.os_user = "postgres" if os.geteuid() == 0 else None
        self.running = False

    @property
    def host(self) -> str:
        """The socket folder, which libpq and Odoo's ``--db_host`` take as a host."""
        return str(self.root)

    def start(self) -> PgCluster:
        sweep_stale(self.root.parent)
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)
        self._as_owner(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            "initdb",
        )
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._as_owner(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "postgres.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            "pg_ctl start",
        )
        self.running = True
        return self

    def stop(self) -> None:
        """Stop the server and remove the folder; safe to call twice."""
        if self.running:
            self._pg_ctl_as(self.os_user, self.bindir, "stop", self.data, "-m", "fast")
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run one statement as the cluster's superuser; returns psql's unaligned output."""
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise PostgresError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _as_owner(self, command: list[str], what: str) -> None:
        if self.os_user:
            command = ["runuser", "-u", self.os_user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            log = self.root / "postgres.log"
            extra = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresError(f"{what} failed: {done.stdout}{done.stderr}{extra}".strip())

    @staticmethod
    def _pg_ctl_as(os_user: str | None, bindir: Path, action: str, data: Path, *args: str) -> None:
        command = [str(bindir / "pg_ctl"), "-D", str(data), "-w", action, *args]
        if os_user:
            command = ["runuser", "-u", os_user, "--", *command]
        with contextlib.suppress(OSError):
            subprocess.run(command, capture_output=True, check=False, timeout=60)

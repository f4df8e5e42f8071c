"""Odoo's own virtual environment, built from the source tree's lock and reused while the lock
is unchanged.

Odoo 18 pins old libraries (``cryptography==3.4.8``, ``urllib3==1.26``) that the daemon's
environment cannot share, so Odoo gets a venv of its own, with exactly the lock and nothing
added: a newer ``jwcrypto`` or ``cryptography`` breaks ``import OpenSSL`` there.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

STAMP = ".odoo-lock-sha256"


class VenvError(RuntimeError):
    """Odoo's environment could not be built; the message says which step failed."""


def lock_file(odoo_src: Path) -> Path:
    """The tree's lock (``requirements-lock.txt``), else Odoo's own ``requirements.txt``."""
    for name in ("requirements-lock.txt", "requirements.txt"):
        if (odoo_src / name).is_file():
            return odoo_src / name
    raise VenvError(f"{odoo_src} has no requirements-lock.txt or requirements.txt")


def ensure_venv(odoo_src: Path, venv: Path, python: str = "python3.11") -> Path:
    """Odoo's interpreter in ``venv``, (re)built when the lock changed; returns its path."""
    lock = lock_file(odoo_src)
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    venv = venv.absolute()
    interpreter = venv / "bin" / "python"
    stamp = venv / STAMP
    if interpreter.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return interpreter
    if venv.exists():
        shutil.rmtree(venv)
    _run([python, "-m", "venv", str(venv)], "create Odoo's virtual environment")
    pip = [str(interpreter), "-m", "pip", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "install", "--no-deps", "-r", str(lock)], f"install {lock.name}")
    _run([*pip, "check"], "check Odoo's environment (pip check)")
    stamp.write_text(digest + "\n")
    return interpreter


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise VenvError(f"could not {what} (exit {done.returncode}):\n{tail}")


if __name__ == "__main__":  # pragma: no cover - a manual entry point
    print(ensure_venv(Path(sys.argv[1]), Path(sys.argv[2])))

"""The reliability soak (issue #17): seeded runs of mail, calendar and outbox through the daemon
under faults, kills and changes on both sides; one line of figures per store; any loss,
duplicate, wrong record or double send fails, with the seed and the command replaying it.

``RELIABILITY_RUNS=N`` soaks (default: a few runs, for CI); ``RELIABILITY_SEED=S`` replays one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from .embedded import embedded_world
from .harness import Soak, seeded_mailbox
from .truth import Figures

RUNS = int(os.environ.get("RELIABILITY_RUNS") or 2)

# Seeds that found a defect, replayed by every run of the suite (the defect, where it was fixed).
REGRESSIONS = {
    100: "a second embedded-store gateway in one process dropped the first one's SQLite locks "
    "(crm/sqlite.py, _prepare_file)",
}


def seeds(regressions: dict[int, str]) -> list[int]:
    """RELIABILITY_SEED alone, or the regression seeds and RUNS new ones (consecutive from
    RELIABILITY_FIRST_SEED, else from a random one)."""
    if os.environ.get("RELIABILITY_SEED"):
        return [int(os.environ["RELIABILITY_SEED"])]
    first = int(os.environ.get("RELIABILITY_FIRST_SEED") or secrets.randbelow(10**9))
    return [*regressions, *(first + n for n in range(RUNS))]


def replay(seed: int, test: str) -> str:
    return (
        f"RELIABILITY_SEED={seed} .venv/bin/python -m pytest -q tests/reliability/test_soak.py "
        f"-k {test}"
    )


def report(figures: Figures, store: str, failures: list[tuple[int, Figures, str]], test: str,
           capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    with capsys.disabled():
        print("\n" + figures.line(store))
    if failures:
        text = []
        for seed, run, tail in failures:
            text.append(f"seed {seed}: {run.line(store)}\n  replay: {replay(seed, test)}")
            text += [f"    {p}" for p in run.problems[:20]]
            text.append("  daemon log (end):\n" + tail)
        pytest.fail("\n".join(text), pytrace=False)


def soak_embedded(seed: int, tmp_path: Path) -> tuple[Figures, str]:
    stack, crm, daemon = embedded_world(tmp_path, seeded_mailbox(seed))
    try:
        figures = Soak(seed, stack.emulator, crm, daemon).run()
        return figures, daemon.tail()
    finally:
        daemon.kill()
        stack.runtime.close()
        stack.emulator.stop()


def test_soak_embedded_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    total, failures = Figures(), []
    for seed in seeds(REGRESSIONS):
        figures, tail = soak_embedded(seed, tmp_path / f"run-{seed}")
        total.add(figures)
        if figures.bad():
            failures.append((seed, figures, tail))
    report(total, "embedded", failures, "embedded", capsys)

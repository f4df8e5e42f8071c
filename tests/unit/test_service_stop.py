"""Stopping the service from a signal handler (found by the reliability soak)."""

from __future__ import annotations

import logging
import signal
from types import SimpleNamespace

from m365sync.service.daemon import Service, ServiceOptions


class HalfImported(logging.Handler):
    """What Rich's handler did when SIGTERM landed while ``rich.table`` was being imported."""

    def emit(self, record: logging.LogRecord) -> None:
        raise ImportError("cannot import name 'Table' from partially initialized module")


def test_sigterm_stops_the_service_whatever_logging_does_meanwhile():
    # RELIABILITY_SEED=30030 (timing-dependent): the handler logged "stopping" before setting
    # the event; the log line raised inside a half-done import, the event was never set, and
    # the daemon ran on for the 60 s the soak waits.
    runtime = SimpleNamespace(holder="")
    service = Service(runtime, ServiceOptions(holder="t:1", health_port=-1))
    service._pool.shutdown()
    logger = logging.getLogger("m365sync")
    broken, level = HalfImported(), logger.level
    logger.addHandler(broken)
    logger.setLevel(logging.INFO)  # as `m365sync run` logs
    try:
        service.stop(signal.SIGTERM, None)
    finally:
        logger.removeHandler(broken)
        logger.setLevel(level)
    assert service.stopping.is_set()
    assert service.status()["status"] == "stopping"

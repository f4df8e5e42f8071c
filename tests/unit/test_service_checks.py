"""The service's periodic checks that need no Graph: the client secret's expiry."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from types import SimpleNamespace

from m365sync.service.daemon import Service, ServiceOptions

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def service_with_secret(expires: date | None) -> Service:
    runtime = SimpleNamespace(
        config=SimpleNamespace(microsoft=SimpleNamespace(client_secret_expires=expires)),
        holder="",
    )
    service = Service(runtime, ServiceOptions(holder="t:1", health_port=-1), clock=lambda: NOW)
    service._pool.shutdown()
    return service


def test_a_secret_far_from_expiry_is_quiet_and_in_metrics(caplog):
    service = service_with_secret(date(2027, 6, 1))
    with caplog.at_level(logging.WARNING):
        assert service.check_secret()
    assert not caplog.records
    expiry = service.metrics.secret_expiry._value.get()
    assert expiry == datetime(2027, 6, 1, tzinfo=UTC).timestamp()


def test_a_month_ahead_warns_and_a_lapsed_secret_is_an_error(caplog):
    with caplog.at_level(logging.WARNING):
        assert not service_with_secret(date(2026, 12, 10)).check_secret()
        assert not service_with_secret(date(2026, 11, 1)).check_secret()
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels[0][0] == logging.WARNING and "expires in 15 day(s)" in levels[0][1]
    assert levels[1][0] == logging.ERROR and "expired on 2026-11-01" in levels[1][1]


def test_no_date_configured_is_not_a_problem():
    assert service_with_secret(None).check_secret()


def test_backoff_doubles_from_the_second_failure_up_to_an_hour():
    from datetime import timedelta

    from m365sync.service.daemon import backoff

    five = timedelta(minutes=5)
    assert [backoff(five, n).total_seconds() / 60 for n in range(7)] == [5, 5, 10, 20, 40, 60, 60]
    assert backoff(timedelta(hours=2), 5) == timedelta(hours=2)  # never below the interval

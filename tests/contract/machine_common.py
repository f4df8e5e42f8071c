"""What the mail and calendar state machines share: a store per example, its contact seeder,
its closing, and the TestCase a test module binds to a gateway (`machine_for`).

``M365_MACHINE_EXAMPLES`` overrides every machine's example count, for a soak:
``M365_MACHINE_EXAMPLES=500 pytest tests/contract/test_sqlite_gateway.py -k Machine``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import Partner

SeedPartner = Callable[..., Partner]


class StoreMachine(RuleBasedStateMachine):
    """A machine over one gateway made fresh for each example and closed after it.

    ``regressions``: the failing examples the machine found, kept as plain step sequences
    (`run_regressions` plays each on a fresh machine), so they run on every store, every time,
    whatever the example database holds."""

    make_gateway: Callable[[], CrmGateway]
    seed_partner: SeedPartner
    close_gateway: Callable[[CrmGateway], None] | None = None
    regressions: tuple[Callable[[Any], None], ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.gateway = type(self).make_gateway()

    def teardown(self) -> None:
        closer = type(self).close_gateway
        if closer is not None:
            closer(self.gateway)


def machine_for(
    machine: type[StoreMachine],
    make_gateway: Callable[[], CrmGateway],
    seed_partner: SeedPartner,
    *,
    close_gateway: Callable[[CrmGateway], None] | None = None,
    max_examples: int = 100,
    steps: int = 30,
    **bound: Any,
) -> type:
    """A unittest TestCase running ``machine`` against the gateways ``make_gateway`` makes;
    ``bound`` sets further class attributes (the calendar's CRM actions)."""
    subclass = type(
        f"Bound{machine.__name__}",
        (machine,),
        {
            "make_gateway": staticmethod(make_gateway),
            "seed_partner": staticmethod(seed_partner),
            "close_gateway": staticmethod(close_gateway) if close_gateway else None,
            **bound,
        },
    )
    case = subclass.TestCase
    case.machine = subclass
    case.settings = settings(
        max_examples=int(os.environ.get("M365_MACHINE_EXAMPLES") or max_examples),
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    return case


def run_regressions(case: type) -> int:
    """Play each of the bound machine's ``regressions`` on a fresh machine; how many ran."""
    machine = case.machine
    for replay in machine.regressions:
        run = machine()
        try:
            replay(run)
        finally:
            run.teardown()
    return len(machine.regressions)

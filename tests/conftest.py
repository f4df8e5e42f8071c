"""Suite-wide settings: hypothesis profiles, as vdirsyncer has them.

``dev`` (default) is quick; ``ci`` (chosen when $CI is set) tries more examples;
``deterministic`` replays a failure exactly (`HYPOTHESIS_PROFILE=deterministic`).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("deterministic", max_examples=50, deadline=None, derandomize=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

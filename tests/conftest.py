"""Suite-wide settings: hypothesis profiles, as vdirsyncer has them.

``dev`` (default) is quick; ``ci`` (chosen when $CI is set) tries more examples;
``deterministic`` replays a failure exactly (`HYPOTHESIS_PROFILE=deterministic`).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# A real Odoo 18 for the session (ODOO_SRC or ODOO_URL...): fixtures private_odoo, odoo_live.
pytest_plugins = ["tests.odoo.plugin"]

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("deterministic", max_examples=50, deadline=None, derandomize=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

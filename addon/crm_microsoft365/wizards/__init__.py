# Filled in by the Odoo addon issue (see readme/ROADMAP.md).
from . import m365_compose_wizard
from . import m365_schedule_wizard

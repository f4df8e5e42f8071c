from . import m365_compose_wizard
from . import m365_schedule_wizard
from . import m365_thread_link_wizard

from . import test_daemon_api
from . import test_leases
from . import test_security
from . import test_controller
from . import test_partner_form
from . import test_outbox
from . import test_wizards
from . import test_calendar_api

from . import crm_lead
from . import calendar_event
from . import m365_mail_thread
from . import m365_outbox

from . import test_opportunity_mail
from . import test_opportunity_meetings
from . import test_pipeline
from . import test_thread_actions
from . import test_tours

from . import main
from . import push

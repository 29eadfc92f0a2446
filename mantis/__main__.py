"""``python -m mantis`` is the ``mantis`` command."""

import sys

from mantis.cli import main

sys.exit(main())

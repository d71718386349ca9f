"""``python -m est_tools.appliance``: the simulated appliance (``scripts/appliance``)."""

import sys

from est_tools.library import without_home_assistant

without_home_assistant()  # before the first import of the library

from .cli import main  # noqa: E402 - after the line above

sys.exit(main())

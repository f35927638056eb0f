"""``python -m standin up|down|preview --stack <name>``"""

import sys

# The first SIGINT is the Pulumi CLI's from the first moment (one line, the run stops before
# its next step), not a KeyboardInterrupt traceback from the middle of the imports below:
# the package's own import is kept light for this (standin/__init__.py).
from standin import interrupt

interrupt.install()

from standin.cli import main  # noqa: E402

sys.exit(main())

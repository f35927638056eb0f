"""``python -m overlaylab.validate``: see ``overlaylab.validate.cli``."""

import sys

from overlaylab.validate.cli import main

if __name__ == "__main__":
    sys.exit(main())

import sys

from overlaylab.validate.cli import main

sys.exit(main())

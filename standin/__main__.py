"""``python -m standin up|down|preview --stack <name>``"""

import sys

from standin.cli import main

sys.exit(main())

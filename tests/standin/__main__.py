"""``python -m tests.standin up|down|preview --stack <name>``"""

import sys

from tests.standin.cli import main

sys.exit(main())

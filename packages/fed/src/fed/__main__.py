"""`python -m fed`: fed's command line (see `fed --help`)."""

import sys

from fed._cli import main

sys.exit(main())

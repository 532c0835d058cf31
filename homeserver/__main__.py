"""`python -m homeserver` runs the `homeserver` command."""

import sys

from homeserver.app import main

sys.exit(main())

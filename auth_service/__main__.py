"""`python -m auth_service …` is the CLI."""

from __future__ import annotations

import sys

from auth_service.cli.main import main

sys.exit(main())

"""Command line: `python -m joyvasa <command> ...` (see `python -m joyvasa --help`)."""
from .cli import main

raise SystemExit(main())

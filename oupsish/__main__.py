"""``python -m oupsish``: the command-line tool (see ``oupsish --help``)."""

from oupsish.cli import main

raise SystemExit(main())

"""``python -m dahash`` runs the command-line interface."""

from dahash.cli import main

raise SystemExit(main())

"""``python -m benchmarks``: see ``benchmarks.suite``."""

from benchmarks.suite import main

raise SystemExit(main())

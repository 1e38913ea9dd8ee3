"""``python -m benchmarks``: see ``benchmarks.suite`` (its ``BENCHMARKS`` lists every script,
``bench_resume`` included)."""

from benchmarks.suite import main

raise SystemExit(main())

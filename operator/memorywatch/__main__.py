"""`python -m memorywatch`: the same as the `memorywatch` console script."""

from memorywatch.cli import main

raise SystemExit(main())

"""Operator tools, outside the library the app and a Python user import: benchmarks, load tests and the demo
recorder (``python -m tools.<name>``, run from the repository root)."""

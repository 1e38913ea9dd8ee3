"""Reliability measurements of issue 13: engine faults, the reload soak, data safety, input abuse.

Each module measures one property through the real app and real processes and returns records;
``benchmarks.bench_reliability`` turns them into the tables of docs/reliability.md, and the
``long`` tests in tests/reliability assert on the same records.
"""

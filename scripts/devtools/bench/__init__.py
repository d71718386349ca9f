"""EST enrollment benchmarks (``scripts/bench``, docs/performance.md) and the loop-lag probe they use."""

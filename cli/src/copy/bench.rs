//! Benchmark of `proactor copy` against `cp` (called by `proactor bench`).

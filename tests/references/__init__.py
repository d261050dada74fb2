"""Reference implementations that tests and benchmarks check reglens against (not shipped)."""

"""Stages: one module per workflow rule family. Each loads its inputs, calls the core, and writes its
outputs atomically; the only code that touches paths, devices and provenance."""

"""Experiment tasks: each builds, runs and evaluates one of the paper's experiments (docs/paper.md)."""

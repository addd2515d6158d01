"""Suites: backbone × task matrices as data, run cell by cell with resume, checked against published numbers.

Layers, bottom up: ``spec`` parses ``benchmarks/suites/*.yaml``; ``state`` keeps the state file and
cell locks; ``worker`` runs one cell in its own process and measures its cost; ``jobs`` folds Slurm
jobs' results into the state; ``plan`` knows the cells, their identities, matching records and what is
pending; the executors ``local`` (one cell after another here) and ``slurm`` (one job per cell) run a
plan the same way; ``checks`` compares with ``results/reported/`` (``suite report``).
"""

from harmony_bench.suites.spec import Cell, Suite, load_suite, suite_files

__all__ = ["Cell", "Suite", "load_suite", "suite_files"]

"""Suites: backbone × task matrices as data, run cell by cell with resume, checked against published numbers.

``spec`` parses ``benchmarks/suites/*.yaml``, ``run`` executes missing cells
(one process each, state file with status and cost), ``report`` compares with
``results/reported/``, ``slurm`` submits cells as jobs.
"""

from harmony_bench.suites.spec import Cell, Suite, load_suite, suite_files

__all__ = ["Cell", "Suite", "load_suite", "suite_files"]

"""Datasets: readers for the benchmarks' standard layouts and synthetic data written in those layouts."""

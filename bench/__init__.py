"""Benchmarks for order-proxy: the proxy against ceilings measured on the same machine, same run.

Entry point: `python -m bench.run [--quick] [--duration S] [--runs N]`.
"""

"""cedargate's benchmark harness: ``python -m bench`` prints a markdown table and writes JSON.

Every figure is a median over repeated runs; every comparison is a ratio against a baseline
measured in the same run, on the same machine, moments apart.
"""

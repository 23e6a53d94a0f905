"""The sub-benchmarks of scripts/bench.py: each module measures one stage, ours beside a real alternative on
identical input, and returns `common.Row`s. Benchmarks, not tests: nothing here asserts a time."""

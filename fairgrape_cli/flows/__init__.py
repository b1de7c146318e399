"""What chains stages: the iterative schedule (``pipeline``, for ``fairgrape run``), experiments
(``experiment``, for the demo and the benchmarks) and the generated data they use (``synthetic``).
Imports stages and everything below them; never commands.
"""

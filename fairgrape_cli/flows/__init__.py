"""What chains stages: the iterative schedule of ``fairgrape run`` (``pipeline``, its ``config``
and ``run_state``), experiments (``experiment``, for the demo and the benchmarks) and the
generated data they use (``synthetic``). Imports stages and everything below them; never commands.
"""

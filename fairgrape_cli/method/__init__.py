"""The mathematics, with no files and no terminal: per-group importance, selection (the FairGRAPE
greedy and the baselines), masks, training, batches, metrics and comparisons. Takes tensors and
dicts, returns them; imports only the package's foundations, never io, render, stages or above.
"""

"""Files in and out: checkpoints, dataset layouts and their tables, images, safetensors artifacts,
report files, atomic writes and recorded paths. Knows no algorithm: imports only the package's
foundations (``errors``), never method, render, stages, flows or commands.
"""

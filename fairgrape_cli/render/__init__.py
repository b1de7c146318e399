"""Reports and comparisons made readable: rich tables and charts for the terminal, self-contained
HTML. Takes report dicts, returns renderables or strings; writes no file; imports nothing above
itself (no method, stages, flows or commands).
"""

"""One module per command: parse flags, call one library function (stages or flows), render what
it returns. Shared option aliases live in ``_options``, terminal output in ``_console``. Only
``cli.py`` imports from here.
"""

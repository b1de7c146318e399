"""One module per command: parse flags, call a library function, render what it returns."""

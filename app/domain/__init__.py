"""Pure domain rules: no I/O, no protocol objects."""

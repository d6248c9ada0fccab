"""The ``vbmkit`` command line (typer): thin commands that parse, call one workflow, print."""

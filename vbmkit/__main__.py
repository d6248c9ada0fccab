"""``python -m vbmkit``: the same command line as the ``vbmkit`` script (for environments where the
script is not on PATH, e.g. a source checkout on ``PYTHONPATH``)."""

from vbmkit.cli.main import app

app(prog_name="vbmkit")

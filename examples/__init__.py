"""Example study YAMLs shipped with vbmkit as package data (``vbmkit._examples`` in the wheel; see pyproject.toml)."""

"""Atlases shipped with vbmkit as package data (``vbmkit._atlases`` in the wheel; see pyproject.toml)."""

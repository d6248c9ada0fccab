"""The formula and contrast language shared by the study YAML, ``vbmkit glm`` and ``vbmkit roi``.

``grammar`` checks a formula or contrast as text against a whitelist (``tokens``: the text level,
``whitelist``: the AST level; nothing is evaluated, formulaic is not imported), so that
:mod:`vbmkit.config` can validate a YAML without depending on the workflows; ``design`` builds the
design matrix with formulaic and parses contrasts against it.
"""

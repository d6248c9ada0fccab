"""Orchestration only (no maths): one subpackage per command, one module per shared helper.

Commands (each subpackage's ``__init__`` re-exports its entry points):

``preprocess``  ``vbmkit preprocess``: T1 images -> tissue maps (:func:`run_preprocess`)
``glm``         ``vbmkit glm``: the voxel-wise GLM (:func:`run_glm`)
``roi``         ``vbmkit roi``: regional volumes and ROI statistics (:func:`run_roi`)
``compare``     ``vbmkit compare``: agreement with CAT12 / SPM12 (:func:`run_compare`)
``study``       ``vbmkit run`` / ``vbmkit init``: the whole study (:func:`run_study`)
``demo``        ``vbmkit demo``: toy and simulated demos; ``simulate``: ``vbmkit simulate``

Shared helpers: ``stage`` (fingerprint, up-to-date check, atomic publish), ``subjects`` (images
<-> covariate rows, the ``missing`` policy), ``progress`` (progress bars). The formula and
contrast language is :mod:`vbmkit.formula` (below the config, which validates formulas with it).

Import order, enforced by import-linter (``pyproject.toml``): demo | simulate -> study ->
compare -> glm | roi -> preprocess -> the shared helpers; nothing imports upwards.
"""

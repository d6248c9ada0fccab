"""``vbmkit preprocess``: T1 images -> tissue maps, one subject at a time, resumable.

``run`` (the batch), ``subject`` (one subject through the pipeline), ``steps`` (its steps, one
function each), ``naming`` (output names and the settings hash that marks a subject finished).
"""

from vbmkit.workflows.preprocess.run import PreprocessSummary, run_preprocess, volume_row

__all__ = ["PreprocessSummary", "run_preprocess", "volume_row"]

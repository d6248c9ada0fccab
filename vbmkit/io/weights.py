"""Network weights that ship in installed wheels, loaded once per process and device.

Only deepbet's brain-extraction TorchScript pair is used by the ``classic`` engine. The
networks of the ``deepmriprep`` engine are downloaded by deepmriprep at run time; vbmkit never
downloads, so :func:`deepmriprep_weights_missing` only reports what is absent.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from vbmkit.errors import ResourceError
from vbmkit.io.resources import deepbet_weights

# File names deepmriprep 0.3.0 expects in ``deepmriprep/data/models`` (its MODEL_FILES).
DEEPMRIPREP_MODEL_FILES = (
    ["brain_extraction_bbox_model.pt", "brain_extraction_model.pt", "segmentation_nogm_model.pt"]
    + [f"segmentation_patch_{i}_model.pt" for i in range(18)]
    + ["segmentation_model.pt", "warp_model.pt"]
)


@dataclass(frozen=True, eq=False)
class BrainExtractionModels:
    """deepbet's two TorchScript networks, in eval mode on one device.

    Attributes
    ----------
    model : torch.jit.ScriptModule
        Brain-mask network applied at 256^3 inside the brain bounding box.
    bbox_model : torch.jit.ScriptModule
        Coarse network applied to the whole image at 128^3 to find the bounding box.
    device : torch.device
    """

    model: torch.jit.ScriptModule
    bbox_model: torch.jit.ScriptModule
    device: torch.device


@lru_cache(maxsize=2)
def _load_deepbet(device_str: str) -> BrainExtractionModels:
    device = torch.device(device_str)
    model_path, bbox_path = deepbet_weights()
    nets = []
    for path in (model_path, bbox_path):
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates jit.load; deepbet ships TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # a truncated or foreign file: say which one
            raise ResourceError(f"deepbet weights {path}: expected a TorchScript file torch can load; "
                                f"got {type(exc).__name__}: {exc} (reinstall deepbet==1.0.2)") from exc
        net.eval()
        nets.append(net)
    return BrainExtractionModels(model=nets[0], bbox_model=nets[1], device=device)


def load_brain_extraction_models(device: torch.device | str = "cpu") -> BrainExtractionModels:
    """deepbet's brain-extraction networks on ``device`` (loaded once per process and device).

    Raises
    ------
    ResourceError
        When deepbet is not installed or its ``.pt`` files are missing or unreadable.
    """
    return _load_deepbet(str(torch.device(device)))


def deepmriprep_weights_missing() -> list[str]:
    """Names of the deepmriprep network files that are not installed (empty when all are)."""
    spec = importlib.util.find_spec("deepmriprep")
    if spec is None or not spec.submodule_search_locations:
        return list(DEEPMRIPREP_MODEL_FILES)
    root = Path(next(iter(spec.submodule_search_locations))) / "data" / "models"
    return [name for name in DEEPMRIPREP_MODEL_FILES if not (root / name).is_file()]

"""Choice of the torch device from a user string (``auto``, ``cpu``, ``cuda``, ``cuda:1``)."""

from __future__ import annotations

import torch

from vbmkit.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for a user-facing device name.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` picks ``cuda`` when a CUDA device is present, else ``cpu``; ``"cpu"``,
        ``"cuda"`` and ``"cuda:N"`` are taken literally.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        For an unknown name, or ``cuda`` when no CUDA device is present.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: expected 'auto', 'cpu' or an available CUDA device; got {device!r}, "
                "but torch sees no CUDA device (use --device cpu or auto)"
            )
        return torch.device(name)
    raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda[:N]'; got {device!r}")

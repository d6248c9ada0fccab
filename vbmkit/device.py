"""Choice of the torch device from a user string (``auto``, ``cpu``, ``cuda``, ``cuda:1``), and its free memory."""

from __future__ import annotations

import os

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


def available_memory_bytes(device: str | torch.device = "cpu") -> int | None:
    """Memory a new allocation can get now, in bytes (None when it cannot be told).

    Parameters
    ----------
    device : str or torch.device
        ``cpu``: ``MemAvailable`` of ``/proc/meminfo`` (free plus reclaimable cache, Linux),
        else free pages from ``os.sysconf``; ``cuda[:N]``: the free memory of that device
        (``torch.cuda.mem_get_info``).

    Returns
    -------
    int or None
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:  # read on call, never at import
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # sysconf names are platform dependent
        return None

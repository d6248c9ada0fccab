"""``OUT/provenance.json``: what a study run was, so that it can be reproduced and cited.

Holds the YAML text and its sha256, the command line, package versions, checksums of the
template and atlas files used, the device, the host, and the status and seconds per stage.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from vbmkit.errors import ResourceError
from vbmkit.io.records import sha256
from vbmkit.io.resources import atlas_paths, describe_resource, template_path
from vbmkit.versions import package_versions as installed_versions

PACKAGES = ("vbmkit", "torch", "numpy", "scipy", "nibabel", "pandas", "statsmodels", "formulaic",
            "nilearn", "matplotlib", "pydantic", "pyyaml", "deepbet", "deepmriprep", "torchreg")


def package_versions() -> dict[str, str]:
    """Installed version of each package of :data:`PACKAGES` (``absent`` when not installed)."""
    return installed_versions(PACKAGES)


sha256_file = lru_cache(maxsize=32)(sha256)  # resources are hashed once per process


def resource_checksums(atlas: str | None) -> dict[str, dict[str, str]]:
    """Source and sha256 of Template_4_GS, Template_05mm_bet and the atlas image and table.

    A source names the package and version that ship the file (``deepmriprep 0.3.0
    (deepmriprep/data/templates/Template_4_GS.nii.gz)``, ``vbmkit 0.1.0
    (vbmkit/_atlases/lpba40/lpba40.nii.gz)``), not where it happens to be installed.
    """
    out: dict[str, dict[str, str]] = {}
    for name in ("Template_4_GS", "Template_05mm_bet"):
        try:
            p = template_path(name)
            out[name] = {"source": describe_resource(p), "sha256": sha256_file(str(p))}
        except ResourceError as exc:
            out[name] = {"error": str(exc)}
    name = atlas if atlas is not None else "lpba40"
    try:
        image, table = atlas_paths(name)
        out[f"atlas:{name}"] = {"atlas": name, "source": describe_resource(image),
                                "sha256": sha256_file(str(image)), "table": describe_resource(table),
                                "table_sha256": sha256_file(str(table))}
    except ResourceError as exc:
        out[f"atlas:{name}"] = {"error": str(exc)}
    return out


def collect_provenance(plan: Any, *, stages: dict[str, dict[str, Any]], started: float) -> dict[str, Any]:
    """The provenance record of a study run (see the module docstring)."""
    device = {"name": plan.device, "torch_threads": torch.get_num_threads()}
    if plan.device.startswith("cuda") and torch.cuda.is_available():
        device["cuda"] = torch.cuda.get_device_name(0)
    roi = plan.config.roi
    return {
        "study": plan.config.name,
        "yaml_path": str(plan.yaml.path),
        "yaml_sha256": hashlib.sha256(plan.yaml.text.encode("utf-8")).hexdigest(),
        "yaml_text": plan.yaml.text,
        "command": sys.argv,
        "out": str(plan.out),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "packages": package_versions(),
        "resources": resource_checksums(roi.atlas if roi is not None else None),
        "device": device,
        "host": {"platform": platform.platform(), "machine": platform.machine(),
                 "processor": platform.processor(), "cpus": _cpus()},
        "subjects": {"t1": [t.name for t in plan.t1], "maps": plan.maps},
        "tiv_from": plan.tiv_from,
        "stages": stages,
    }


def _cpus() -> int | None:
    return os.cpu_count()


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 2400) -> str:
    """Render ``html`` to ``png`` with headless Chromium when installed; return what happened."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
               None)
    if exe is None:
        return "no chromium on PATH: report.png not written"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={width},{height}", f"--screenshot={png}", html.resolve().as_uri()]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"chromium failed ({type(exc).__name__}): report.png not written"
    return f"screenshot {png.name}"

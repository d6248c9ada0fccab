"""A methods paragraph a paper can quote, written from a ``vbmkit glm`` ``summary.json``.

Used by the GLM report (:mod:`vbmkit.report.glm_report`) and the study report
(:mod:`vbmkit.report.study_report`). Plain text (the caller escapes it for HTML); package
versions are read when the paragraph is written, never at import.
"""

from __future__ import annotations

from vbmkit.versions import package_versions as installed_versions

#: The references the paragraph cites, in citation order (no URLs: the reports stay offline).
REFERENCES = {
    "fisch2024": ("Fisch L, Winter NR, Goltermann J, et al. (2024). deepmriprep: Voxel-based Morphometry (VBM) "
                  "preprocessing via deep neural networks. arXiv:2408.10656."),
    "bh1995": ("Benjamini Y, Hochberg Y (1995). Controlling the false discovery rate: a practical and powerful "
               "approach to multiple testing. Journal of the Royal Statistical Society B 57(1):289-300."),
    "fl1983": ("Freedman D, Lane D (1983). A nonstochastic interpretation of reported significance levels. "
               "Journal of Business & Economic Statistics 1(4):292-298."),
    "winkler2014": ("Winkler AM, Ridgway GR, Webster MA, Smith SM, Nichols TE (2014). Permutation inference for "
                    "the general linear model. NeuroImage 92:381-397."),
    "sn2009": ("Smith SM, Nichols TE (2009). Threshold-free cluster enhancement: addressing problems of "
               "smoothing, threshold dependence and localisation in cluster inference. NeuroImage 44(1):83-98."),
    "shattuck2008": ("Shattuck DW, Mirza M, Adisetiyo V, et al. (2008). Construction of a 3D probabilistic atlas "
                     "of human cortical structures. NeuroImage 39(3):1064-1080."),
}

_PACKAGES = ("torch", "numpy", "scipy", "nilearn", "nibabel", "formulaic")


def package_versions(names=_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages the statistics use (``"?"`` when one is not installed)."""
    return installed_versions(names, missing="?")


def _tail_text(tail: str) -> str:
    return {"positive": "one-sided (positive tail, SPM's convention)", "negative": "one-sided (negative tail)",
            "both": "two-sided (maximum over both tails)"}.get(tail, tail)


def _contrast_text(name: str, c: dict) -> str:
    df = c.get("df", [float("nan"), float("nan")])
    if c.get("type") == "F":
        return f"{name} (F, df {df[0]:g} and {df[1]:g})"
    return f"{name} (t, df {df[1]:g})"


def methods_paragraph(summary: dict, *, versions: dict[str, str] | None = None) -> str:
    """Describe a GLM run in prose: software, model, covariates, mask, subsampling, inference, references.

    Parameters
    ----------
    summary : dict
        The content of a ``vbmkit glm`` ``summary.json`` (``settings``, ``formula``,
        ``design_columns``, ``n_subjects``, ``n_voxels``, ``contrasts``, ``vbmkit_version``).
    versions : dict, optional
        Package -> version; default :func:`package_versions` (read now).

    Returns
    -------
    str
        One paragraph of plain text, citing the works of :data:`REFERENCES` by author and year;
        the reference list itself is :data:`REFERENCES`.
    """
    v = versions if versions is not None else package_versions()
    s = summary.get("settings", {})
    contrasts = summary.get("contrasts", {})
    covariates = [c for c in summary.get("design_columns", []) if c != "Intercept"]
    standardized = sorted(summary.get("standardized", {}))
    parts = [
        f"Voxel-wise statistics were computed with vbmkit {summary.get('vbmkit_version', '?')} "
        f"(Python {v.get('python', '?')}, PyTorch {v.get('torch', '?')}, NumPy {v.get('numpy', '?')}, "
        f"SciPy {v.get('scipy', '?')}, nilearn {v.get('nilearn', '?')}) on the {s.get('maps', 's6mwp1')} maps of "
        f"{summary.get('n_subjects', '?')} subjects (modulated, smoothed grey-matter maps on CAT12's 1.5 mm "
        "MNI template grid, as written by deepmriprep-style preprocessing; Fisch et al. 2024).",
        f"A general linear model with the formula '{summary.get('formula', '?')}' (intercept added; categorical "
        "variables dummy-coded against their first level) was fitted by ordinary least squares at each of the "
        f"{summary.get('n_voxels', '?')} voxels of the analysis mask; the design columns were "
        f"{', '.join(covariates) if covariates else 'the intercept only'}"
        + (f", with {', '.join(standardized)} centred and scaled to unit SD" if standardized else "") + ".",
    ]
    if s.get("mask"):
        parts.append("The mask was given as an image; voxels without data in any image were left out.")
    else:
        rule = "every image" if s.get("mask_rule") == "all" else "the mean image"
        parts.append(f"The mask held the voxels where {rule} exceeded {s.get('mask_threshold', 0.1):g} "
                     "(absolute threshold), without voxels that were constant or missing in any image.")
    inference = [c.get("inference") for c in contrasts.values() if c.get("inference")]
    tail = inference[0].get("tail", "positive") if inference else "positive"
    sided = {"negative": "one-sided (lower tail)", "both": "two-sided"}.get(tail, "one-sided (upper tail)")
    parts.append("Contrasts: " + "; ".join(_contrast_text(n, c) for n, c in contrasts.items()) + ". "
                 f"Uncorrected p values of t contrasts in the peak tables are {sided}, and the false discovery "
                 "rate was controlled over the mask with the Benjamini-Hochberg procedure (q; Benjamini & Hochberg "
                 "1995).")
    if inference:
        first = inference[0]
        n_perm = first.get("n_permutations")
        scheme = ("sign flipping of the residuals (Winkler et al. 2014)" if first.get("scheme") == "flip"
                  else "the Freedman-Lane permutation of the residuals of the nuisance model "
                       "(Freedman & Lane 1983; Winkler et al. 2014)")
        text = (f"Family-wise error (FWE) was controlled non-parametrically with {n_perm} transforms (the identity "
                f"included; random seed {s.get('seed', 0)}) using {scheme}, with the maximum statistic over the "
                "mask as null distribution")
        if first.get("engine") == "map":
            text += f", {_tail_text(first.get('tail', 'positive'))}"
            if first.get("blocks"):
                text += f", exchanging subjects only within the blocks of '{first['blocks']}'"
            tfce = first.get("tfce")
            if tfce:
                text += (f"; threshold-free cluster enhancement (TFCE; Smith & Nichols 2009) with E = {tfce['e']:g}, "
                         f"H = {tfce['h']:g} and {tfce['connectivity']}-connectivity was computed exactly (no "
                         "height steps) and its maximum formed a second null distribution")
            if first.get("cluster_p") is not None:
                text += (f"; cluster extent and cluster mass FWE p values used a cluster-forming threshold of "
                         f"uncorrected p < {first['cluster_p']:g} with {first.get('cluster_connectivity', 26)}-"
                         "connectivity")
        parts.append(text + ".")
    else:
        parts.append("No permutation inference was run, so no family-wise error correction is reported.")
    if s.get("subsamples"):
        strat = f", stratified by {s['stratify']}" if s.get("stratify") else ""
        parts.append(f"To show how results depend on the sample's composition, the model was refitted on "
                     f"{s['subsamples']} random subsets of {100 * float(s.get('fraction', 0.8)):g} % of the subjects"
                     f"{strat} (seed {s.get('seed', 0)}), and the voxel-wise median statistic and the fraction of "
                     "subsets above the threshold (stability) were reported; a median t is about "
                     f"sqrt({float(s.get('fraction', 0.8)):g}) times the full-sample t, and the overlapping subsets "
                     "are not independent replications.")
    parts.append("Clusters list up to three peaks more than 8 mm apart, with MNI coordinates and the regions of "
                 "the LPBA40 (Shattuck et al. 2008) and neuromorphometrics atlases.")
    return " ".join(parts)


def references() -> list[str]:
    """The reference list of :func:`methods_paragraph`, sorted by first author."""
    return sorted(REFERENCES.values())

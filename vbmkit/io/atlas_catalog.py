"""The named atlases vbmkit offers: the label images of the deepmriprep wheel (CAT12's set).

Every atlas here loads with :func:`vbmkit.io.atlas.load_atlas` by its short name and lies on
vbmkit's 1.5 mm output grid (``Template_4_GS``): ``lpba40`` is vbmkit's own resampled copy
(``atlases/lpba40/``); the others are read from the wheel (1 mm, 0.6 mm or 0.5 mm, CAT12's
MNI152NLin2009cAsym space) and resampled onto the grid by nearest neighbour with the same
half-up rule (:func:`vbmkit.io.atlas.resample_labels`).

``--atlas`` specifications (:func:`resolve_atlas_names`): one name, several separated by commas,
``all`` (every atlas of :data:`CATALOG`) or ``cat12`` (CAT12's default volume atlases:
:data:`CAT12_DEFAULT`). A path to a label NIfTI is passed through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from vbmkit.errors import ConfigError


@dataclass(frozen=True)
class AtlasEntry:
    """One named atlas.

    Attributes
    ----------
    name : str
        vbmkit's name (``--atlas``, the ``atlas`` column of the tables).
    file : str
        Stem of the image and table (``<file>.nii.gz``, ``<file>.csv`` in the wheel); also the
        element name of CAT12's ``catROI_<name>.xml``.
    source : str
        What it delineates and who made it (the reference to cite).
    licence : str
        Terms as stated by its makers / CAT12 (they apply to the label files, not to vbmkit).
    """

    name: str
    file: str
    source: str
    licence: str


def _schaefer(n: int) -> AtlasEntry:
    return AtlasEntry(f"schaefer{n}", f"Schaefer2018_{n}Parcels_17Networks_order",
                      f"Schaefer et al. 2018 (Cereb Cortex 28:3095): {n} cortical parcels of 17 "
                      "resting-state networks (Yeo 2011), CBIG", "MIT (CBIG repository)")


#: name -> entry, in the order ``vbmkit atlases`` lists them.
CATALOG: dict[str, AtlasEntry] = {e.name: e for e in (
    AtlasEntry("lpba40", "lpba40", "LONI Probabilistic Brain Atlas: 56 structures of 40 volunteers "
               "(Shattuck et al. 2008, NeuroImage 39:1064); vbmkit's copy on the output grid",
               "CC BY-NC (CAT12 labels_dartel_lpba40.xml)"),
    AtlasEntry("neuromorphometrics", "neuromorphometrics", "Neuromorphometrics, Inc.: manual labels of "
               "OASIS brains (MICCAI 2012 Grand Challenge), cortex, subcortex, cerebellum, ventricles",
               "free for academic use (Neuromorphometrics academic licence, as distributed with SPM/CAT12)"),
    AtlasEntry("cobra", "cobra", "CoBrA lab (Douglas Institute): hippocampal subfields, amygdala, "
               "basal ganglia, thalamus, cerebellum (Winterburn 2013, Park 2014, Tullo 2018)",
               "CC BY-NC-SA (CoBrALab atlases)"),
    AtlasEntry("hammers", "hammers", "Hammers et al. 2003 / Gousias et al. 2008: adult maximum-probability "
               "atlas, 30 subjects (brain-development.org)", "CC BY-NC (brain-development.org)"),
    AtlasEntry("aal3", "aal3", "Automated Anatomical Labelling 3 (Rolls et al. 2020, NeuroImage "
               "206:116189)", "free for research use (GIN-IMN, Bordeaux)"),
    AtlasEntry("ibsr", "ibsr", "Internet Brain Segmentation Repository (CMA, Massachusetts General "
               "Hospital): 18 manually segmented brains", "CC BY-NC (as stated by CAT12)"),
    AtlasEntry("mori", "mori", "JHU-MNI atlas of Mori/Oishi et al. 2009 (NeuroImage 46:486): cortex "
               "and deep white matter", "free for academic use (Johns Hopkins University)"),
    AtlasEntry("julichbrain", "julichbrain", "Julich-Brain cytoarchitectonic maximum-probability map "
               "(Amunts et al. 2020, Science 369:988), EBRAINS", "CC BY 4.0 (EBRAINS)"),
    AtlasEntry("anatomy3", "anatomy3", "SPM Anatomy toolbox 3 cytoarchitectonic areas (Eickhoff et al. "
               "2005, NeuroImage 25:1325)", "free for academic use (Forschungszentrum Juelich)"),
    AtlasEntry("suit", "suit", "SUIT cerebellar lobules (Diedrichsen et al. 2009, NeuroImage 46:39)",
               "CC BY-NC 3.0 (SUIT)"),
    AtlasEntry("thalamus", "thalamus", "thalamic nuclei from diffusion MRI (Najdenovska et al. 2018, "
               "Sci Data 5:180270)", "CC BY 4.0"),
    AtlasEntry("thalamic_nuclei", "thalamic_nuclei", "thalamic nuclei at 0.5 mm (THOMAS, Saranathan et "
               "al. 2021, Sci Data 8:275)", "CC BY 4.0"),
    *(_schaefer(n) for n in (100, 200, 400, 600)),
)}

#: CAT12's default volume atlases (its ``cat.extopts.atlas`` with ROI output on).
CAT12_DEFAULT = ("neuromorphometrics", "lpba40", "cobra", "hammers")

_BY_FILE = {e.file.lower(): e for e in CATALOG.values()}


def catalog_entry(name: str) -> AtlasEntry | None:
    """The entry of a named atlas (by vbmkit name or wheel file stem, any case), or None."""
    key = str(name).strip().lower()
    return CATALOG.get(key, _BY_FILE.get(key))


def resolve_atlas_names(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """Expand an ``--atlas`` specification into atlas names, in order, without repeats.

    Parameters
    ----------
    spec : str or sequence of str
        ``lpba40``; ``lpba40,neuromorphometrics``; ``all``; ``cat12``; a label NIfTI path; or a
        list of such items.

    Returns
    -------
    list of str
        Catalog names (lower-case short names) and paths, first occurrence kept.

    Raises
    ------
    ConfigError
        For an empty specification, or a name that is neither in :data:`CATALOG` nor a
        ``.nii``/``.nii.gz`` path.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    parts = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"atlas: expected a name, several separated by commas, 'all' or 'cat12'; got {spec!r}")
    out: list[str] = []
    for part in parts:
        low = part.lower()
        if low == "all":
            names = list(CATALOG)
        elif low == "cat12":
            names = list(CAT12_DEFAULT)
        elif catalog_entry(part) is not None:
            names = [catalog_entry(part).name]
        elif low.endswith((".nii", ".nii.gz")):
            names = [part]
        else:
            raise ConfigError(f"atlas: expected one of {sorted(CATALOG)}, 'all', 'cat12' or a label NIfTI "
                              f"path; got {part!r} (vbmkit atlases lists them)")
        out += [n for n in names if n not in out]
    return out


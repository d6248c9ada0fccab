"""A synthetic VBM cohort with known effects, built from CAT12's shooting template.

Every subject starts from the template's GM/WM/CSF maps (``Template_4_GS``) and gets

- individual anatomy: a smooth random field that scales GM by a few percent, then sharper
  tissue boundaries than the group template's (an individual brain is not an average);
- atrophy that grows linearly with age inside named atlas regions (the age effect) and extra
  atrophy in patients inside other regions (the group effect), planted as tissue shrinkage:
  a smooth displacement field (:mod:`vbmkit.simulate.atrophy`) pulls the region's tissue
  together and CSF fills the space it leaves, as in a real brain;
- a head size: a global scale ``s`` that depends on sex, so native volumes scale with s^3;
- then, through :func:`vbmkit.simulate.phantom.make_phantom`, a random smooth deformation,
  a T1-like contrast, a bias field and noise.

The truth a perfect pipeline would produce (``modulated``) is the subject's template-space
anatomy times the Jacobian determinant of the inverse atrophy map, times s^3: it holds the
subject's native GM volume. The true effect maps are the first-order change of that truth per
year of age and per patient (``-a GM div v_age`` and ``-g GM div v_group``; exact as the loss
goes to zero, about 25 % larger than the change at a 30 % loss).

Pure tensor code: no file access; the workflow :mod:`vbmkit.workflows.simulate` writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.simulate.atrophy import displacement_jacobian, invert_displacement, pull, shrink_field
from vbmkit.simulate.ventricles import ventricle_field, widen_ventricles

TEMPLATE_VOXEL_MM = 1.5  # Template_4_GS


@dataclass(frozen=True)
class CohortParameters:
    """Settings of :func:`design_cohort` (all recorded with the simulated cohort).

    Attributes
    ----------
    age_range : (float, float)
        Ages are uniform in this range (years).
    age_effect_per_year : float
        Fraction of GM lost per year of age above ``age_range[0]`` in the age regions.
    group_effect : float
        Fraction of GM lost by patients in the group regions.
    head_scale_mean : float
        Mean linear head scale relative to the template (MNI152 brains are larger than most:
        0.92 gives a mean TIV near 1,600 mL).
    head_scale_sex : float
        The scale is ``head_scale_mean * (1 + head_scale_sex)`` for ``M`` and ``(1 - head_scale_sex)``
        for ``F``...
    head_scale_sd : float
        ... plus (relative) normal noise of this SD.
    anatomy_sd : float
        SD of the smooth log-scale field that varies GM between subjects.
    anatomy_scale_mm : float
        Spacing of the control points of that field in mm (its smoothness).
    sharpen : float
        Exponent ``g`` on the individual tissue fractions, ``f_k^g / sum_j f_j^g`` (1: the
        template's blur; 3: thin partial-volume boundaries as in one brain).
    voxel_size_mm : float
        Working resolution of the T1 images before head scaling (the template is 1.5 mm;
        smaller values upsample the tissue maps trilinearly).
    deformation_mm, bias_strength, noise_sd, blur_fwhm_mm : float
        Passed to :func:`vbmkit.simulate.phantom.make_phantom`.
    ventricle_widening_mm_per_year : float
        Outward move of the lateral ventricles' wall per year above ``age_range[0]``, mm (0: none;
        :mod:`vbmkit.simulate.ventricles`; GM is untouched by it, WM recedes, CSF fills).
    """

    age_range: tuple[float, float] = (20.0, 80.0)
    age_effect_per_year: float = 0.005
    group_effect: float = 0.15
    head_scale_mean: float = 0.92
    head_scale_sex: float = 0.04
    head_scale_sd: float = 0.025
    anatomy_sd: float = 0.06
    anatomy_scale_mm: float = 24.0
    sharpen: float = 3.0
    voxel_size_mm: float = 1.5
    deformation_mm: float = 2.0
    bias_strength: float = 0.2
    noise_sd: float = 0.03
    blur_fwhm_mm: float = 0.0
    ventricle_widening_mm_per_year: float = 0.0


@dataclass(frozen=True, eq=False)
class CohortDesign:
    """Everything shared by the subjects of a cohort (template space, 1.5 mm).

    Attributes
    ----------
    priors : torch.Tensor
        (3, X, Y, Z) float32 GM, WM, CSF fractions of the template.
    age_weight, group_weight : torch.Tensor
        (X, Y, Z) float32 in [0, 1]: soft masks of the age and group regions.
    age_field, group_field : torch.Tensor
        (3, X, Y, Z) float32 pull displacement (voxels) per unit loss in those regions
        (:func:`vbmkit.simulate.atrophy.shrink_field`).
    age, head_scale : torch.Tensor
        (N,) float64 age in years and linear head scale s.
    ventricle_field : torch.Tensor or None
        (3, X, Y, Z) pull displacement per voxel of ventricle widening
        (:func:`vbmkit.simulate.ventricles.ventricle_field`); None without widening.
    sex, group : list of str
        ``"F"``/``"M"`` and ``"control"``/``"patient"`` per subject.
    parameters : CohortParameters
    """

    priors: torch.Tensor
    age_weight: torch.Tensor
    group_weight: torch.Tensor
    age_field: torch.Tensor
    group_field: torch.Tensor
    age: torch.Tensor
    head_scale: torch.Tensor
    sex: list[str]
    group: list[str]
    parameters: CohortParameters = field(default_factory=CohortParameters)
    ventricle_field: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.age.numel())


@dataclass(frozen=True, eq=False)
class SimulatedSubject:
    """One simulated subject.

    Attributes
    ----------
    t1 : torch.Tensor or None
        (X', Y', Z') float32 T1-like image on the working grid (None without images).
    tissue : torch.Tensor or None
        (3, X', Y', Z') float32 native GM, WM, CSF truth (deformed like ``t1``).
    labels : torch.Tensor or None
        (X', Y', Z') hard labels of the phantom (0 background, 1 CSF, 2 GM, 3 WM).
    voxel_size_mm : float
        Isotropic native voxel size: working resolution times the head scale.
    modulated : torch.Tensor
        (3, X, Y, Z) float32 template-space GM, WM, CSF times s^3: the mwp1/mwp2/mwp3 of a
        perfect pipeline (before the Jacobian of the random nuisance deformation).
    volumes_ml : dict
        Native ``gm_ml``, ``wm_ml``, ``csf_ml``, ``tiv_ml`` of ``tissue`` (of ``modulated``
        without images).
    """

    t1: torch.Tensor | None
    tissue: torch.Tensor | None
    labels: torch.Tensor | None
    voxel_size_mm: float
    modulated: torch.Tensor
    volumes_ml: dict[str, float]


def tissue_priors(template: torch.Tensor, *, voxel_size_mm: float = TEMPLATE_VOXEL_MM) -> torch.Tensor:
    """GM, WM, CSF fractions from Template_4_GS's GM, WM, rest volumes.

    Parameters
    ----------
    template : torch.Tensor
        (3, X, Y, Z) GM, WM and "rest" (CSF and background) in [0, 1].

    Returns
    -------
    torch.Tensor
        (3, X, Y, Z) float32 GM, WM, CSF; CSF is the rest inside a soft intracranial mask (GM+WM
        smoothed with 10 mm FWHM, divided by 0.5, capped at 1), so it ends near the skull
        instead of filling the box; then, as in the phantom, the three sum to 1 where their
        sum exceeds 0.5 and are 0 elsewhere.
    """
    if template.ndim != 4 or template.shape[0] != 3:
        raise ValueError(f"template: expected (3, X, Y, Z) GM, WM, rest; got shape {tuple(template.shape)}")
    gm, wm, rest = template.float().clamp(0, 1).unbind(0)
    brain = smooth_fwhm((gm + wm)[None, None], 10.0, (voxel_size_mm,) * 3)[0, 0]
    icv = (brain / 0.5).clamp(0, 1)  # soft edge: fraction of intracranial space
    csf = (rest * icv).clamp(min=0.0)
    csf = torch.minimum(csf, (1 - gm - wm).clamp(min=0.0))
    tissue = torch.stack([gm, wm, csf])
    # As the phantom does (vbmkit.simulate.phantom): fractions sum to 1 where they exceed 0.5
    # and are 0 elsewhere, so the rendered native truth equals these maps up to deformation.
    total = tissue.sum(0)
    return torch.where(total > 0.5, tissue / total.clamp_min(1e-6), torch.zeros_like(tissue))


def region_weight(atlas: torch.Tensor, region_ids: Sequence[int], *,
                  voxel_size_mm: float = TEMPLATE_VOXEL_MM, edge_fwhm_mm: float = 3.0) -> torch.Tensor:
    """Soft mask in [0, 1] of the union of atlas regions (edges smoothed by ``edge_fwhm_mm``).

    Raises
    ------
    ValueError
        When a region id does not occur in ``atlas``.
    """
    missing = [int(r) for r in region_ids if not bool((atlas == int(r)).any())]
    if missing or not region_ids:
        raise ValueError(f"region_ids: expected ids present in the atlas; got {list(region_ids)} "
                         f"(missing {missing})")
    mask = torch.isin(atlas, torch.as_tensor(list(region_ids), dtype=atlas.dtype)).float()
    return smooth_fwhm(mask[None, None], edge_fwhm_mm, (voxel_size_mm,) * 3)[0, 0].clamp(0, 1)


def design_cohort(template: torch.Tensor, atlas: torch.Tensor, *, n: int, generator: torch.Generator,
                  age_regions: Sequence[int], group_regions: Sequence[int],
                  parameters: CohortParameters | None = None, ventricles: torch.Tensor | None = None) -> CohortDesign:
    """Draw the covariates of ``n`` subjects and build the shared maps.

    Parameters
    ----------
    template : torch.Tensor
        (3, X, Y, Z) Template_4_GS (GM, WM, rest) on its 1.5 mm grid.
    atlas : torch.Tensor
        (X, Y, Z) integer region ids on the same grid (LPBA40).
    n : int
        Number of subjects, >= 4 (sex and group are balanced, then shuffled).
    generator : torch.Generator
        Source of every random draw.
    age_regions, group_regions : sequences of int
        Atlas ids where GM declines with age / is lower in patients.
    ventricles : torch.Tensor, optional
        (X, Y, Z) bool lateral ventricles on the grid; needed when
        ``parameters.ventricle_widening_mm_per_year`` > 0.
    """
    params = parameters if parameters is not None else CohortParameters()
    if n < 4:
        raise ValueError(f"n: expected at least 4 subjects; got {n}")
    vfield = None
    if params.ventricle_widening_mm_per_year > 0:
        if ventricles is None or tuple(ventricles.shape) != tuple(template.shape[1:]):
            raise ValueError("ventricles: a (X, Y, Z) mask on the template grid is needed for "
                             f"ventricle_widening_mm_per_year={params.ventricle_widening_mm_per_year}; got "
                             f"{None if ventricles is None else tuple(ventricles.shape)}")
        vfield = ventricle_field(ventricles)
    if atlas.shape != template.shape[1:]:
        raise ValueError(f"atlas: expected the template's grid {tuple(template.shape[1:])}; got {tuple(atlas.shape)}")
    lo, hi = params.age_range
    age = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    age = torch.round(age * 10) / 10  # one decimal, as written to participants.tsv
    sex_m = (torch.arange(n) % 2 == 0)[torch.randperm(n, generator=generator)]
    patient = (torch.arange(n) % 2 == 1)[torch.randperm(n, generator=generator)]
    scale = params.head_scale_mean * (1.0 + params.head_scale_sex * (2 * sex_m.double() - 1)
                                      + params.head_scale_sd * torch.randn(n, generator=generator, dtype=torch.float64))
    age_weight = region_weight(atlas, age_regions)
    group_weight = region_weight(atlas, group_regions)
    return CohortDesign(
        priors=tissue_priors(template),
        age_weight=age_weight,
        group_weight=group_weight,
        age_field=shrink_field(age_weight),
        group_field=shrink_field(group_weight),
        age=age,
        head_scale=scale,
        sex=["M" if m else "F" for m in sex_m.tolist()],
        group=["patient" if p else "control" for p in patient.tolist()],
        parameters=params,
        ventricle_field=vfield,
    )


def sharpen_fractions(tissue: torch.Tensor, power: float) -> torch.Tensor:
    """(3, X, Y, Z) fractions raised to ``power`` and renormalised to their original sum."""
    if power == 1.0:
        return tissue
    total = tissue.sum(0, keepdim=True)
    powered = tissue.clamp_min(0) ** float(power)
    return powered / powered.sum(0, keepdim=True).clamp_min(1e-12) * total


def _divergence(field: torch.Tensor) -> torch.Tensor:
    return sum(torch.gradient(field[i], dim=i)[0] for i in range(3))


def true_effect_maps(design: CohortDesign) -> dict[str, torch.Tensor]:
    """Expected change of a subject's template-space GM (mwp1 at head scale 1).

    Returns
    -------
    dict
        ``age``: (X, Y, Z) GM change per year (negative in the age regions); ``group``: patient
        minus control. First order in the loss: ``-a GM div(v_age)`` and ``-g GM div(v_group)``,
        with GM the sharpened template GM (the mean individual anatomy).
    """
    p = design.parameters
    gm = sharpen_fractions(design.priors, p.sharpen)[0]
    return {"age": -p.age_effect_per_year * gm * _divergence(design.age_field),
            "group": -p.group_effect * gm * _divergence(design.group_field)}


def _smooth_field(shape: tuple[int, int, int], spacing_vox: float, generator: torch.Generator) -> torch.Tensor:
    coarse = [max(2, round(s / spacing_vox) + 1) for s in shape]
    noise = torch.randn(1, 1, *coarse, generator=generator)
    field = F.interpolate(noise, size=shape, mode="trilinear", align_corners=True)[0, 0]
    return (field - field.mean()) / field.std().clamp_min(1e-6)


@dataclass(frozen=True, eq=False)
class SubjectTissue:
    """Template-space tissue of one subject at head scale 1.

    Attributes
    ----------
    anatomy : torch.Tensor
        (3, X, Y, Z) GM, WM, CSF fractions after atrophy, in template-aligned coordinates
        (what the phantom renders).
    modulated : torch.Tensor
        (3, X, Y, Z) what a perfect pipeline's modulated maps hold: the pre-atrophy anatomy
        times the Jacobian determinant of the inverse atrophy map (CSF: the intracranial space
        the tissue leaves).
    """

    anatomy: torch.Tensor
    modulated: torch.Tensor


def subject_tissue(design: CohortDesign, index: int, *, generator: torch.Generator) -> SubjectTissue:
    """Template-space anatomy of subject ``index`` and its modulated truth (head scale 1)."""
    p = design.parameters
    gm, wm, csf = design.priors.unbind(0)
    field = _smooth_field(tuple(gm.shape), p.anatomy_scale_mm / TEMPLATE_VOXEL_MM, generator)
    ind = torch.minimum(gm * torch.exp(p.anatomy_sd * field), gm + csf)  # GM gained comes from CSF
    base = sharpen_fractions(torch.stack([ind, wm, (csf + gm - ind).clamp(min=0.0)]), p.sharpen)
    if design.ventricle_field is not None:  # wider ventricles with age: WM recedes, GM stays
        shift_vox = p.ventricle_widening_mm_per_year * (float(design.age[index]) - p.age_range[0]) / TEMPLATE_VOXEL_MM
        base = widen_ventricles(base, shift_vox * design.ventricle_field)
    age_loss = p.age_effect_per_year * (float(design.age[index]) - p.age_range[0])
    group_loss = p.group_effect * float(design.group[index] == "patient")
    if age_loss == 0.0 and group_loss == 0.0:
        return SubjectTissue(anatomy=base, modulated=base)
    v = age_loss * design.age_field + group_loss * design.group_field
    icv = base.sum(0)
    moved = pull(base[:2], v)
    moved = moved * (icv / moved.sum(0).clamp_min(1e-6)).clamp(max=1.0)  # the skull stays where it is
    anatomy = torch.cat([moved, (icv - moved.sum(0)).clamp(min=0.0)[None]])  # CSF fills what the tissue leaves
    jac = displacement_jacobian(invert_displacement(v))
    tissue = base[:2] * jac
    modulated = torch.cat([tissue, (icv - tissue.sum(0)).clamp(min=0.0)[None]])
    return SubjectTissue(anatomy=anatomy, modulated=modulated)


def simulate_subject(design: CohortDesign, index: int, *, generator: torch.Generator,
                     images: bool = True) -> SimulatedSubject:
    """Tissue maps and T1-like image of subject ``index`` (0-based).

    With ``images=False`` only the template-space truth is made (no phantom, no T1): the
    modulated maps are identical to those of ``images=True`` for the same generator seed,
    because the phantom draws only after them.

    Notes
    -----
    The template-space maps are upsampled to ``voxel_size_mm`` when it is below 1.5 mm;
    the head scale s enters only through the voxel size handed to the phantom (s times the
    working resolution), so a native volume is s^3 times that at scale 1, with no
    interpolation.
    """
    if not 0 <= index < design.n:
        raise ValueError(f"index: expected 0 <= index < {design.n}; got {index}")
    p = design.parameters
    sub = subject_tissue(design, index, generator=generator)
    tissue = sub.anatomy
    s = float(design.head_scale[index])
    if not images:
        sums = sub.modulated.double().sum(dim=(1, 2, 3)) * (TEMPLATE_VOXEL_MM * s) ** 3 / 1000.0
        volumes = {"gm_ml": float(sums[0]), "wm_ml": float(sums[1]), "csf_ml": float(sums[2]),
                   "tiv_ml": float(sums.sum())}
        return SimulatedSubject(t1=None, tissue=None, labels=None, voxel_size_mm=p.voxel_size_mm * s,
                                modulated=sub.modulated * s**3, volumes_ml=volumes)
    from vbmkit.simulate.phantom import make_phantom  # only the images need the phantom

    working = tissue
    if p.voxel_size_mm != TEMPLATE_VOXEL_MM:
        size = [round(n * TEMPLATE_VOXEL_MM / p.voxel_size_mm) for n in tissue.shape[1:]]
        working = F.interpolate(tissue[None], size=size, mode="trilinear", align_corners=True)[0]
    vox = p.voxel_size_mm * s
    ph = make_phantom(working, generator=generator, deformation_mm=p.deformation_mm, voxel_size_mm=(vox,) * 3,
                      bias_strength=p.bias_strength, noise_sd=p.noise_sd, blur_fwhm_mm=p.blur_fwhm_mm,
                      sharpen=1.0)  # keep the fractions: the native truth must match `modulated`
    sums = ph.tissue.double().sum(dim=(1, 2, 3)) * vox**3 / 1000.0
    volumes = {"gm_ml": float(sums[0]), "wm_ml": float(sums[1]), "csf_ml": float(sums[2]),
               "tiv_ml": float(sums.sum())}
    return SimulatedSubject(t1=ph.t1, tissue=ph.tissue, labels=ph.labels, voxel_size_mm=vox,
                            modulated=sub.modulated * s**3, volumes_ml=volumes)

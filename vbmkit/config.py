"""The study YAML as one pydantic model tree (``extra="forbid"``, ``schema_version``).

Every section is optional except ``inputs``; a section that is absent is not run by
``vbmkit run`` (``glm`` needs ``inputs.covariates``). Field docs live in ``docs/config.md``;
the descriptions below are what ``vbmkit init`` writes as comments.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vbmkit.errors import ConfigError
from vbmkit.formula.grammar import check_contrast, check_formula

SCHEMA_VERSION = 1


def _range(cls: type[BaseModel], field: str) -> str:
    """The interval of a numeric field from its ``Field`` bounds: ``(0, 1]``, ``[0, inf)``."""
    low, high = "(-inf", "inf)"
    for bound in cls.model_fields[field].metadata:  # annotated_types Gt, Ge, Le, Lt
        if getattr(bound, "gt", None) is not None:
            low = f"({bound.gt:g}"
        elif getattr(bound, "ge", None) is not None:
            low = f"[{bound.ge:g}"
        elif getattr(bound, "le", None) is not None:
            high = f"{bound.le:g}]"
        elif getattr(bound, "lt", None) is not None:
            high = f"{bound.lt:g})"
    return f"{low}, {high}"


def _finite(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """Refuse NaN and infinities (YAML ``.nan``, ``.inf``, ``1e400``; ``--threshold nan``) with the range.

    Runs before pydantic's own checks, whose messages about NaN ("should be greater than 0")
    would mislead; other values go on unchanged to the type and bound checks.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    except ValueError:
        return value
    if not math.isfinite(number):
        shown = repr(value) if len(repr(value)) <= 30 else repr(value)[:27] + "..."
        raise PydanticCustomError("value_error", f"expected a finite number in {_range(cls, info.field_name)}; "
                                                 f"got {shown}")
    return value


def _finite_fields(*names: str) -> Any:
    """A "before" validator of the named numeric fields: :func:`_finite` (one line in each section)."""
    return field_validator(*names, mode="before")(_finite)


def _grammar(check: Callable[..., object], *args: Any) -> None:
    """Run a formula-grammar check; its ConfigError becomes a pydantic error with the same text."""
    try:
        check(*args)
    except ConfigError as exc:
        # PydanticCustomError leaves the message as it is (no "Value error, " prefix, braces kept)
        raise PydanticCustomError("value_error", str(exc)) from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputsConfig(_Section):
    t1: list[str] = Field(default_factory=list, description=(
        "T1-weighted images to preprocess: files, globs or BIDS folders "
        "(sub-*/[ses-*/]anat/*_T1w.nii[.gz])."))
    maps: list[str] = Field(default_factory=list, description=(
        "Already preprocessed maps for the statistics (files, globs, or vbmkit / CAT12 / "
        "deepmriprep output folders); used instead of the preprocess outputs when given."))
    covariates: Path | None = Field(None, description="Covariate table (CSV or TSV, e.g. BIDS participants.tsv).")
    id_column: str = Field("participant_id", description="Column of the covariate table holding subject IDs.")
    missing: Literal["error", "drop"] = Field("error", description=(
        "What to do with images without a covariate row and rows without an image: "
        "'error' lists them and stops; 'drop' lists them and goes on without them."))


class PreprocessConfig(_Section):
    engine: Literal["classic", "deepmriprep"] = Field("classic", description=(
        "'classic' needs no weights beyond deepbet's; 'deepmriprep' uses the paper's networks "
        "when their weights are installed."))
    fwhm: list[float] = Field(default_factory=lambda: [6.0], description="Smoothing kernels, FWHM in mm.")
    jobs: int = Field(1, ge=1, description="Subjects processed in parallel (CPU processes).")
    skull_strip: Literal["auto", "always", "never"] = Field("auto", description=(
        "Run deepbet brain extraction: 'auto' always runs it and never cuts brain on skull-stripped input."))
    save_deformation: bool = Field(False, description="Also write the deformation field y_<name>.nii.gz.")
    segmentation_resolution_mm: float = Field(1.0, gt=0.3, le=2.0, description=(
        "Voxel size of the segmentation grid in mm (subject space: the native grid when its voxels "
        "already have this size, else resampled on native axes)."))
    deformed_priors: bool = Field(True, description=(
        "Segment twice: the second time with the template priors deformed onto the subject by a "
        "coarse nonlinear registration of the first result (as SPM's unified segmentation); "
        "false: affine priors only (faster, less accurate)."))
    csf_wm_class: bool = Field(True, description=(
        "With deformed_priors: a CSF/WM partial-volume class around the lateral ventricles, so that "
        "the ventricle wall (CSF/WM mixtures, GM-like intensity) is not read as GM "
        "(docs/algorithms_segmentation.md)."))
    registration: Literal["variational", "demons"] = Field("variational", description=(
        "Nonlinear registration to Template_4_GS: 'variational' minimises a defined energy (SSD of "
        "GM/WM + a Shooting-style regulariser in mm: smooth deformations); 'demons' is the "
        "log-domain demons of pipeline versions 1-4 (docs/algorithms_registration.md)."))
    registration_iterations: list[int] | None = Field(None, description=(
        "Nonlinear registration steps at 6, 3 and 1.5 mm (coarse to fine; 0 skips a level, "
        "e.g. [40, 30, 0] for a fast, coarser warp); default: the method's, [40, 30, 25] "
        "(variational) or [40, 30, 10] (demons). A level skipped here is skipped by the "
        "registration that deforms the priors of the second segmentation, too."))
    modulation: Literal["push", "pull"] = Field("push", description=(
        "How mwp1/mwp2 are made: 'push' sends each native voxel's tissue volume through the "
        "inverse map (CAT12's 'preserve amount': the total equals the native volume); 'pull' "
        "samples the native map and multiplies by the Jacobian (exact only on average)."))
    layout: Literal["cat12", "bids"] = Field("cat12", description=(
        "Output names: 'cat12' (<name>/mri/mwp1<name>.nii.gz, report/, label/) or 'bids' "
        "(BIDS-derivatives names: sub-X/[ses-Y/]anat/sub-X_space-..._label-GM_desc-modulated_probseg.nii.gz; "
        "docs/outputs.md)."))
    cat12_xml: bool = Field(True, description=(
        "Also write CAT12's report/cat_<name>.xml (TIV, tissue volumes, quality ratings) and "
        "label/catROI_<name>.xml (native-space ROI volumes of roi_atlases)."))
    roi_atlases: str = Field("cat12", description=(
        "Atlases of catROI_<name>.xml: names separated by commas, 'cat12' (neuromorphometrics, "
        "lpba40, cobra, hammers), 'all' or 'none'."))

    @field_validator("registration_iterations")
    @classmethod
    def _three_levels(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if len(v) != 3 or any(n < 0 for n in v) or sum(v) == 0:
            raise ValueError(f"expected 3 non-negative counts (6, 3, 1.5 mm levels), not all 0; got {v}")
        return v

    @field_validator("fwhm")
    @classmethod
    def _fwhm_positive(cls, v: list[float]) -> list[float]:
        if not v or any(not math.isfinite(f) or f <= 0 or f > 30 for f in v):
            raise ValueError(f"expected one or more finite FWHM values in (0, 30] mm; got {v}")
        return v

    _finite_numbers = _finite_fields("segmentation_resolution_mm")


class GlmConfig(_Section):
    maps: str = Field("s6mwp1", description="Which map to analyse from output folders (s6mwp1, mwp1, s6mwp2, ...).")
    formula: str = Field(..., description="Right-hand side of the model, e.g. 'age + C(sex) + TIV'; an intercept is added.")
    contrasts: dict[str, str | list[float] | list[list[float]]] = Field(..., description=(
        "Named contrasts: a column expression ('age', '-age', 'C(group)[T.depr]', 'a - b'), a "
        "vector, a matrix (F), a list of columns 'F: a, b', or a whole factor 'C(site)' (F)."))
    standardize: bool = Field(True, description="Centre and scale continuous covariates (t and p are unchanged; betas are per SD).")
    subsamples: int = Field(100, ge=0, description="Number of random subsamples (0: none).")
    fraction: float = Field(0.8, gt=0.0, le=1.0, description="Fraction of subjects in each subsample, drawn without replacement.")
    stratify: str | None = Field(None, description="Categorical column to stratify the subsamples by.")
    permutations: int = Field(0, ge=0, description="Freedman-Lane permutations for max-statistic FWE p, the identity included (0: none; else >= 2).")
    seed: int = Field(0, description="Seed of the subsample draws and permutations.")
    mask: Path | None = Field(None, description="Explicit mask image (non-zero = in); overrides mask_threshold.")
    store: Path | None = Field(None, description=(
        "Subject x voxel store (`vbmkit stack`) to stream the maps from instead of the image files: "
        "memory stays bounded for any N x V (no permutations from a store)."))
    mask_threshold: float = Field(0.1, ge=0.0, description="Absolute threshold of the mask rule (CAT12-like default 0.1).")
    mask_rule: Literal["mean", "all"] = Field("all", description=(
        "Which images must exceed mask_threshold: 'all' (every image: SPM/CAT12's absolute threshold "
        "masking; default) or 'mean' (the mean map, vbmkit's rule before issue 14)."))
    threshold: float | None = Field(None, gt=0.0, description=(
        "Statistic threshold for the stability map and clusters; default: the t (or F) of "
        "uncorrected p = 0.001."))
    cluster_min_voxels: int = Field(10, ge=1, description="Smallest cluster listed in clusters.csv, in voxels.")
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda'.")
    memory_gb: float | None = Field(None, gt=0, le=1e5, description="Memory budget for the voxel chunks (default: a safe share of free memory).")
    tfce: bool = Field(False, description=(
        "Threshold-free cluster enhancement with FWE p maps (tfce, p_fwe_tfce, log_p_fwe_tfce); needs permutations >= 2."))
    tfce_e: float = Field(0.5, gt=0.0, le=10.0, description="TFCE extent exponent E (Smith & Nichols 2009: 0.5).")
    tfce_h: float = Field(2.0, gt=0.0, le=10.0, description="TFCE height exponent H (Smith & Nichols 2009: 2).")
    tfce_connectivity: Literal[6, 18, 26] = Field(6, description=(
        "TFCE neighbourhood: 6 (faces; FSL randomise and nilearn's default), 18 or 26; TFCE values depend on it."))
    cluster_p: float | None = Field(None, gt=0.0, lt=1.0, description=(
        "Cluster-forming uncorrected p for cluster extent / mass FWE p in clusters.csv (needs permutations; "
        "default: none, or 0.001 when --tfce, --tail, --blocks or a one-sample design run the map-level engine)."))
    tail: Literal["positive", "negative", "both"] = Field("positive", description=(
        "Tail of the permutation FWE p of t contrasts (SPM: positive); F contrasts are always positive."))
    blocks: str | None = Field(None, description=(
        "Covariate column of exchangeability blocks: permute within blocks (sign flips: flip whole blocks)."))

    _finite_numbers = _finite_fields("fraction", "mask_threshold", "threshold", "memory_gb", "tfce_e", "tfce_h",
                                     "cluster_p")

    @model_validator(mode="after")
    def _inference_needs_permutations(self) -> GlmConfig:
        if self.permutations < 2:
            for name, given in (("tfce", self.tfce), ("cluster_p", self.cluster_p is not None),
                                ("blocks", self.blocks is not None)):
                if given:
                    raise PydanticCustomError("value_error", f"{name} needs permutations >= 2 (its FWE p come from "
                                              f"permutations); got permutations {self.permutations}; set "
                                              f"permutations (--permutations N)")
        return self

    @field_validator("formula")
    @classmethod
    def _formula_grammar(cls, v: str) -> str:
        _grammar(check_formula, v)
        return v

    @field_validator("contrasts")
    @classmethod
    def _some_contrast(cls, v: dict) -> dict:
        if not v:
            raise ValueError("expected at least one named contrast")
        for name, expr in v.items():
            _grammar(check_contrast, str(name), expr)
        return v

    @field_validator("permutations")
    @classmethod
    def _not_one_permutation(cls, v: int) -> int:
        if v == 1:
            raise ValueError("expected 0 (no permutations) or at least 2 (the identity counts as one); got 1")
        return v


class QcConfig(_Section):
    exclude_flagged: bool = Field(False, description="Exclude subjects flagged by the homogeneity check from the GLM.")
    sd_threshold: float = Field(2.0, gt=0, description="Flag subjects whose mean correlation is below mean - k SD.")

    _finite_numbers = _finite_fields("sd_threshold")


class RoiConfig(_Section):
    atlas: str = Field("lpba40", description=(
        "Atlas name (`vbmkit atlases` lists them), several separated by commas, 'all', 'cat12' "
        "(neuromorphometrics, lpba40, cobra, hammers) or a label NIfTI path."))
    tissues: list[Literal["gm", "wm", "csf"]] = Field(default_factory=lambda: ["gm", "wm", "csf"],
                                                      description="Tissues to measure (csf when mwp3 exists).")
    native: bool = Field(False, description=(
        "Measure in native space as CAT12 does (needs p1/p2 and y_ beside each mwp1: "
        "preprocess.save_deformation) instead of summing the template-space modulated maps."))
    statistics: bool = Field(True, description="Fit the study's formula and contrasts to every region (roi_stats.csv).")


class CompareConfig(_Section):
    cat12: Path | None = Field(None, description="CAT12 output folder to compare with.")
    spm: Path | None = Field(None, description="SPM12 segmentation or results folder to compare with.")
    ours: Path | None = Field(None, description="Our outputs (default: this study's preprocess folder).")

    @model_validator(mode="after")
    def _one_reference(self) -> CompareConfig:
        if (self.cat12 is None) == (self.spm is None):
            raise ValueError("expected exactly one of 'cat12' and 'spm' (the folder to compare with); got "
                             f"{'both' if self.cat12 is not None else 'neither'}")
        return self


class ReportConfig(_Section):
    title: str = Field("vbmkit study", description="Title of report.html.")
    screenshot: bool = Field(False, description="Also render report.png with headless Chromium when installed.")


class ComputeConfig(_Section):
    """Where subject-level work runs: a Dask cluster started with dask-jobqueue (``--cluster``)."""

    cores: int = Field(2, ge=1, le=1024, description="CPU cores per batch job (shared by its workers).")
    memory: str = Field("8GB", description="Memory per batch job, as the scheduler writes it ('8GB', '16GiB').")
    walltime: str = Field("04:00:00", description="Run time limit of each batch job (HH:MM:SS).")
    queue: str | None = Field(None, description="Partition (SLURM) or queue (PBS, SGE) to submit to.")
    account: str | None = Field(None, description="Account / project charged for the jobs.")
    job_extra_directives: list[str] = Field(default_factory=list, description=(
        "Extra lines for the job header, e.g. ['--gres=gpu:1'] (SLURM) or ['-l ngpus=1'] (PBS)."))
    job_script_prologue: list[str] = Field(default_factory=list, description=(
        "Shell lines run before the worker starts, e.g. ['module load cuda', 'source ~/vbm/.venv/bin/activate']."))
    processes: int = Field(1, ge=1, le=256, description="Dask worker processes per job (each gets cores / processes threads).")
    gpus: int = Field(0, ge=0, le=64, description=(
        "GPUs per job: one worker process per GPU, each computing on its own device (cuda:0, cuda:1, ...)."))
    maximum_jobs: int = Field(10, ge=1, le=100000, description="Most batch jobs running at once (the cluster adapts up to it).")
    retries: int = Field(2, ge=0, le=100, description=(
        "Reruns of a subject whose task raised (a worker that dies is handled by the scheduler)."))
    local_directory: str | None = Field(None, description="Node-local scratch folder for the Dask workers ($TMPDIR).")

    @field_validator("memory")
    @classmethod
    def _memory_unit(cls, v: str) -> str:
        if not re.fullmatch(r"\s*\d+(\.\d+)?\s*([KMGT]i?B)\s*", v):
            raise ValueError(f"expected a size with a unit, e.g. '8GB' or '16GiB'; got {v!r}")
        return v.strip()

    @field_validator("walltime")
    @classmethod
    def _walltime_format(cls, v: str) -> str:
        if not re.fullmatch(r"(\d+-)?\d{1,3}:\d{2}(:\d{2})?", v):
            raise ValueError(f"expected a walltime HH:MM:SS (or D-HH:MM:SS); got {v!r}")
        return v


class StudyConfig(_Section):
    schema_version: Annotated[int, Field(description="Version of this schema; must be 1.")] = SCHEMA_VERSION
    name: str = Field("study", description="Short name of the study.")
    out: Path | None = Field(None, description="Output folder (default: beside the YAML, <name>_out).")
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda' for every stage.")
    inputs: InputsConfig
    preprocess: PreprocessConfig | None = None
    qc: QcConfig | None = None
    glm: GlmConfig | None = None
    roi: RoiConfig | None = None
    compare: CompareConfig | None = None
    report: ReportConfig | None = None
    compute: ComputeConfig | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # the default output folder is <yaml folder>/<name>_out: a name must not leave that folder
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", v) or ".." in v:
            raise ValueError(f"expected a plain name (letters, digits, _ . -; no '/' or '..'); got {v!r}")
        return v

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"expected schema_version {SCHEMA_VERSION}; got {v}")
        return v

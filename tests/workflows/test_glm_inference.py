"""run_glm with the whole-map permutation engine: TFCE, cluster FWE, tails, blocks, sign flips."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from vbmkit.config import GlmConfig
from vbmkit.errors import ConfigError, CovariateError
from vbmkit.formula.design import build_design, parse_contrasts
from vbmkit.stats.map_permutation import TfceSettings, permutation_inference
from vbmkit.workflows.glm import CLUSTER_COLUMNS, run_glm

SHAPE = (7, 8, 9)
# Flipped (LAS) and anisotropic, as the other GLM tests.
AFFINE = np.array([[-2.0, 0, 0, 6.0], [0, 1.5, 0, -6.0], [0, 0, 1.0, -4.0], [0, 0, 0, 1.0]])
N = 16
EFFECT = (slice(1, 4), slice(2, 5), slice(3, 6))  # 27 voxels with an age effect (and a positive mean)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    rng = np.random.default_rng(3)
    age = np.linspace(20, 80, N) + rng.normal(0, 1, N)
    base = 0.3 + 0.5 * rng.random(SHAPE)
    effect = np.zeros(SHAPE)
    effect[EFFECT] = 0.004
    diffs = np.zeros(SHAPE)
    diffs[EFFECT] = 0.1  # the one-sample maps: mean 0.1 in the block, 0 elsewhere
    for i in range(N):
        data = base + effect * (age[i] - 50) + 0.02 * rng.standard_normal(SHAPE)
        nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), str(root / f"s6mwp1sub-{i + 1:02d}.nii.gz"))
        one = 0.5 + diffs + 0.05 * rng.standard_normal(SHAPE)
        (root / "diff").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(one.astype(np.float32), AFFINE), str(root / "diff" / f"dsub-{i + 1:02d}.nii.gz"))
    pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(N)], "age": age.round(2),
                  "site": np.repeat(["a", "b"], N // 2)}).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def _settings(**kw) -> GlmConfig:
    base = {"formula": "age", "contrasts": {"age": "age"}, "subsamples": 0, "permutations": 20,
            "mask_threshold": 0.0, "device": "cpu", "tfce": True}
    return GlmConfig(**{**base, **kw})


def _run(cohort, out, images=None, **kw):
    images = images if images is not None else [str(cohort / "s6mwp1sub-*.nii.gz")]
    return run_glm(images, cohort / "participants.tsv", id_column="participant_id", settings=_settings(**kw),
                   out=out, progress=False)


def _load(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def tfce_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfce") / "glm"
    return out, _run(cohort, out)


def test_tfce_maps_written_and_peak_at_effect(tfce_run):
    out, summary = tfce_run
    files = summary["contrasts"]["age"]["files"]
    for role in ("tfce", "p_fwe_tfce", "log_p_fwe_tfce", "p_fwe"):
        assert (out / files[role]).is_file()
    p = _load(out / "age" / "p_fwe_tfce.nii.gz")
    assert 0 < p.min() and p.max() <= 1
    # the smallest p (1/20: no permutation beats the identity) lies in the planted block
    assert p[EFFECT].max() == pytest.approx(p.min())
    outside = np.ones(SHAPE, bool)
    outside[EFFECT] = False
    assert np.median(p[outside]) == 1.0  # TFCE spreads to the block's neighbours, not far beyond
    tfce = _load(out / "age" / "tfce.nii.gz")
    peak = np.unravel_index(np.argmax(tfce), SHAPE)
    assert tfce.min() >= 0 and all(s.start <= i < s.stop for s, i in zip(EFFECT, peak, strict=True))
    inference = summary["contrasts"]["age"]["inference"]
    assert inference["scheme"] == "permute" and inference["tail"] == "positive"
    assert inference["tfce"] == {"e": 0.5, "h": 2.0, "connectivity": 6}
    assert summary["settings"]["tfce"] is True


def test_log_p_is_signed_minus_log10_p(tfce_run):
    out, _ = tfce_run
    p = _load(out / "age" / "p_fwe_tfce.nii.gz").astype(np.float64)
    log_p = _load(out / "age" / "log_p_fwe_tfce.nii.gz").astype(np.float64)
    # float32 on disk: 1e-6 relative
    np.testing.assert_allclose(log_p, -np.log10(p), rtol=1e-6, atol=1e-7)


def test_cluster_table_has_fwe_columns(tfce_run):
    out, summary = tfce_run
    table = pd.read_csv(out / "age" / "clusters.csv")
    assert list(table.columns) == CLUSTER_COLUMNS and len(table) >= 1
    for col in ("p_fwe_cluster", "p_fwe_mass"):
        assert ((table[col] > 0) & (table[col] <= 1)).all()
    first = table.iloc[0]
    assert first["size_voxels"] >= 10 and first["p_fwe_cluster"] == pytest.approx(1 / 20)
    ijk = np.linalg.solve(AFFINE, [first["peak_x_mm"], first["peak_y_mm"], first["peak_z_mm"], 1.0])[:3]
    assert all(s.start <= round(v) < s.stop for s, v in zip(EFFECT, ijk, strict=True))  # peak in MNI mm
    assert summary["contrasts"]["age"]["cluster_threshold"] > 0


def test_values_match_direct_permutation_inference(cohort, tfce_run):
    """The workflow adds no maths: the same numbers as a direct call on the same data."""
    out, summary = tfce_run
    table = pd.read_csv(cohort / "participants.tsv", sep="\t")
    design = build_design(table, "age", standardize=True, id_column="participant_id")
    contrasts = parse_contrasts({"age": "age"}, design)
    mask = _load(out / "mask.nii.gz").astype(bool)
    assert summary["subjects"] == list(design.table["participant_id"])  # the design's row order
    images = [cohort / f"s6mwp1{s}.nii.gz" for s in summary["subjects"]]
    Y = torch.from_numpy(np.stack([_load(p)[mask] for p in images]).astype(np.float32))
    X = design.X
    direct = permutation_inference(Y, X, contrasts, mask=mask, n_permutations=20, seed=0, tfce=TfceSettings(),
                                   cluster_p=0.001, columns=design.columns)["age"]
    # float32 on disk: relative 1e-6
    np.testing.assert_allclose(_load(out / "age" / "tfce.nii.gz")[mask], direct.tfce.numpy()[mask], rtol=1e-5)
    np.testing.assert_array_equal(_load(out / "age" / "p_fwe_tfce.nii.gz")[mask],
                                  direct.p_fwe_tfce.numpy()[mask].astype(np.float32))
    np.testing.assert_array_equal(_load(out / "age" / "p_fwe.nii.gz")[mask],
                                  direct.p_fwe_voxel.numpy()[mask].astype(np.float32))
    clusters = pd.read_csv(out / "age" / "clusters.csv")
    clusters = clusters[clusters["peak"] == 1]  # one row per peak: the cluster maximum first
    big = [c for c in direct.clusters if c.extent >= 10]
    assert list(clusters["p_fwe_cluster"]) == [c.p_fwe_extent for c in big]
    assert list(clusters["p_fwe_mass"]) == [c.p_fwe_mass for c in big]


def test_tail_both_gives_signed_tfce(cohort, tmp_path):
    summary = _run(cohort, tmp_path / "g", contrasts={"neg": "-age"}, tail="both")
    tfce = _load(tmp_path / "g" / "neg" / "tfce.nii.gz")
    log_p = _load(tmp_path / "g" / "neg" / "log_p_fwe_tfce.nii.gz")
    assert tfce[EFFECT].max() < 0 and tfce.max() >= 0  # the effect is negative for -age
    assert (np.sign(log_p[tfce < 0]) <= 0).all() and log_p[EFFECT].max() < 0
    p = _load(tmp_path / "g" / "neg" / "p_fwe.nii.gz")
    assert p[EFFECT].max() == pytest.approx(1 / 20)  # two-sided maxT finds the negative effect
    assert summary["contrasts"]["neg"]["inference"]["tail"] == "both"
    table = pd.read_csv(tmp_path / "g" / "neg" / "clusters.csv")
    assert (table["peak_value"] < 0).any()


def test_one_sample_design_uses_sign_flips(cohort, tmp_path):
    summary = _run(cohort, tmp_path / "g", images=[str(cohort / "diff" / "*.nii.gz")], formula="1",
                   contrasts={"mean": "1"}, tfce=False)
    inference = summary["contrasts"]["mean"]["inference"]
    assert inference["scheme"] == "flip" and inference["tfce"] is None
    assert not (tmp_path / "g" / "mean" / "tfce.nii.gz").exists()
    p = _load(tmp_path / "g" / "mean" / "p_fwe.nii.gz")
    assert p[EFFECT].max() == pytest.approx(1 / 20)
    table = pd.read_csv(tmp_path / "g" / "mean" / "clusters.csv")
    assert list(table.columns) == CLUSTER_COLUMNS


def test_blocks_column(cohort, tmp_path):
    summary = _run(cohort, tmp_path / "g", blocks="site", tfce=False)
    assert summary["contrasts"]["age"]["inference"]["blocks"] == "site"
    assert json.loads((tmp_path / "g" / "summary.json").read_text())["settings"]["blocks"] == "site"


def test_unknown_blocks_column_is_one_error(cohort, tmp_path):
    with pytest.raises(CovariateError, match=r"blocks: expected a column 'scanner' in the covariate table; its "
                                             r"columns are \['participant_id', 'age', 'site'\]"):
        _run(cohort, tmp_path / "g", blocks="scanner")
    assert not (tmp_path / "g").exists()


def test_rerun_with_other_settings_recomputes(cohort, tmp_path):
    first = _run(cohort, tmp_path / "g", tfce=False, cluster_p=0.01)
    second = _run(cohort, tmp_path / "g", tfce=False, cluster_p=0.01)
    assert first["fingerprint"] == second["fingerprint"]
    third = _run(cohort, tmp_path / "g", tfce=False, cluster_p=0.05)
    assert third["fingerprint"] != first["fingerprint"]
    assert third["contrasts"]["age"]["cluster_threshold"] < first["contrasts"]["age"]["cluster_threshold"]


@pytest.mark.parametrize(("kw", "match"), [
    ({"tfce": True, "permutations": 0}, r"tfce needs permutations >= 2"),
    ({"cluster_p": 0.01, "permutations": 0, "tfce": False}, r"cluster_p needs permutations >= 2"),
    ({"blocks": "site", "permutations": 0, "tfce": False}, r"blocks needs permutations >= 2"),
    ({"tfce_e": float("nan")}, r"tfce_e\n.*expected a finite number in \(0, 10\]"),
    ({"cluster_p": 1.0}, r"cluster_p\n.*less than 1"),
    ({"tail": "left"}, r"tail\n.*'positive', 'negative' or 'both'"),
    ({"tfce_connectivity": 8}, r"tfce_connectivity\n.*6, 18 or 26"),
])
def test_settings_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        _settings(**kw)


def test_whole_map_memory_is_checked_before_reading(cohort, tmp_path, monkeypatch):
    import vbmkit.workflows.glm.resources as resources

    monkeypatch.setattr(resources, "available_memory_bytes", lambda device: 10**9)
    monkeypatch.setattr(resources, "map_permutation_parts", lambda *a: (2 * 10**9, 0, 1, 0))
    with pytest.raises(ConfigError, match=r"--permutations 20: needs about 2(\.0)? GB for the whole-map permutations "
                                        r"\(TFCE, clusters\); 1(\.0)? GB available; lower --permutations"):
        _run(cohort, tmp_path / "g")
    assert not (tmp_path / "g").exists()

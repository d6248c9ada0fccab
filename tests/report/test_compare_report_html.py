"""report.html of ``vbmkit compare``: self-contained, with the paper's tables and figures; renders in Chromium."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vbmkit.report.compare_report import (
    overlap_summary,
    write_compare_report,
)
from vbmkit.report.html import Section, html_figure, html_table, render_page

REPO = Path(__file__).resolve().parents[2]


def _metrics_and_arrays():
    rng = np.random.default_rng(0)
    names = [f"sub-{i:02d}_T1w" for i in range(1, 7)]
    subjects = {}
    for k, n in enumerate(names):
        subjects[n] = {"dice_gm": 0.90 + 0.01 * k, "dice_wm": 0.93, "dice_csf": 0.80, "prob_dice_gm": 0.88,
                       "prob_dice_wm": 0.9, "prob_dice_csf": 0.7, "jaccard_gm": 0.82, "jaccard_wm": 0.87,
                       "jaccard_csf": 0.67, "r_mwp1": 0.95, "r_mwp2": 0.96, "tiv_ours_ml": 1500 + 10 * k,
                       "tiv_cat12_ml": 1490 + 11 * k, "gm_ours_ml": 700 + k, "gm_cat12_ml": 690 + 2 * k,
                       "wm_ours_ml": 500.0, "wm_cat12_ml": 505.0}
    subjects[names[0]]["dice_csf"] = None  # a missing value prints as a dash
    roi = {r: {t: {"r": 0.95, "icc": 0.9, "mean_diff_ml": 0.2} for t in ("gm", "wm")}
           for r in ("lSupFroG", "rSupFroG", "lPrcG")}
    paired = pd.DataFrame([{"subject": n, "region": r, "tissue": t, "ours_ml": v, "reference_ml": v * 1.02 + 0.1}
                           for n in names for r in roi for t in ("gm", "wm") for v in [float(rng.uniform(5, 15))]])
    contrasts = {"age": {"r_median_t": 0.87, "max_abs_t_ours": 6.1, "max_abs_t_cat12": 5.8,
                         "dice_suprathreshold": 0.61, "threshold_ours": 3.5, "n_subjects": 20, "same_draws": True}}
    t = np.zeros((12, 14, 12), dtype=np.float32)
    t[4:8, 5:9, 4:8] = 5.0
    affine = np.array([[-8.0, 0, 0, 48], [0, 8, 0, -60], [0, 0, 8, -40], [0, 0, 0, 1]])
    tmaps = {"age": (t, 0.9 * t + 0.2, affine)}
    sl = [rng.uniform(0, 3, (14, 12)) for _ in range(3)]
    worst = [{"name": names[0], "dice_gm": 0.9, "label": "p0 vs p0", "ours": sl, "reference": sl}]
    metrics = {"reference": {"kind": "cat12", "path": "/data/cat12"}, "ours": "/data/vbmkit", "matched": names,
               "unmatched": {"ours_only": ["sub-99_T1w"], "reference_only": []},
               "definitions": {"dice_<tissue>": "Dice of hard labels"}, "subjects": subjects, "roi": roi,
               "contrasts": contrasts, "missing": ["sub-03_T1w: report/cat_sub-03_T1w.xml missing"]}
    return metrics, paired, tmaps, worst


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    metrics, paired, tmaps, worst = _metrics_and_arrays()
    path = tmp_path_factory.mktemp("rep") / "report.html"
    write_compare_report(path, metrics, paired=paired, tmaps=tmaps, worst=worst)
    return path


def test_report_is_self_contained_with_tables_and_figures(report_file):
    html = report_file.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']https?://""", html)  # nothing fetched from outside
    srcs = re.findall(r'<img src="([^"]{0,30})', html)
    # volumes, ROI volumes, glass brains of the one contrast, one worst subject
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for heading in ("Tissue maps per subject", "Volumes", "ROI volumes (LPBA40)", "t-maps per contrast",
                    "Worst-agreeing subjects"):
        assert f"<h2>{heading}</h2>" in html
    assert "<td>0.870</td>" in html  # r of the median t-maps
    assert "sub-99_T1w" in html and "cat_sub-03_T1w.xml missing" in html
    assert "&ndash;" in html  # the missing CSF Dice


def test_overlap_summary_median_and_iqr():
    metrics, *_ = _metrics_and_arrays()
    table = overlap_summary(metrics["subjects"])
    gm = table.set_index("tissue").loc["GM", "Dice"]
    vals = np.array([0.90 + 0.01 * k for k in range(6)])
    assert gm.startswith(f"{np.median(vals):.3f} ({np.percentile(vals, 25):.3f}")


def test_html_helpers():
    df = pd.DataFrame({"name": ["a<b", "c"], "x": [1.23456, float("nan")], "n": [3, 4]})
    t = html_table(df, digits=2)
    assert "<td class=\"txt\">a&lt;b</td>" in t and "<td>1.23</td>" in t and "&ndash;" in t and "<td>3</td>" in t
    assert "1 more rows" in html_table(df, max_rows=1)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    page = render_page("T & Co", [Section("One", [html_figure(fig, caption="cap")], anchor="one")])
    assert "<title>T &amp; Co</title>" in page and 'href="#one"' in page and "data:image/png;base64," in page


def _screenshot_module():
    spec = importlib.util.spec_from_file_location("screenshot", REPO / "scripts" / "screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(_screenshot_module().find_chromium() is None and shutil.which("chromium") is None,
                    reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report_file, tmp_path):
    import matplotlib.image as mpimg

    shot = _screenshot_module()
    png = shot.screenshot(report_file, tmp_path / "report.png", width=1200, height=2000)
    assert shot.png_size(png) == (1200, 2000)
    img = mpimg.imread(png)
    assert img.std() > 0.05  # not a blank page: tables and figures drew pixels


def test_reference_note_is_in_the_title(tmp_path):
    """A benchmark's synthetic reference is said in the title, not passed off as CAT12."""
    metrics, paired, tmaps, worst = _metrics_and_arrays()
    metrics["reference"]["note"] = "synthetic reference: a noisy copy"
    text = write_compare_report(tmp_path / "r.html", metrics, paired=paired).read_text()
    title = re.search(r"<h1[^>]*>(.*?)</h1>", text, re.S).group(1)
    assert "vbmkit vs CAT12" in title and "synthetic reference: a noisy copy" in title
    plain = write_compare_report(tmp_path / "p.html", _metrics_and_arrays()[0], paired=paired).read_text()
    assert "synthetic" not in re.search(r"<h1[^>]*>(.*?)</h1>", plain, re.S).group(1)


def test_table_link_columns_show_the_file_name_and_link_the_path():
    import pandas as pd

    df = pd.DataFrame({"name": ["sub-01", "sub-02"], "qc_image": ["../pre/sub-01/report/sub-01_qc.png", None]})
    html = html_table(df, links={"qc_image": "qc/"})
    assert '<a href="qc/../pre/sub-01/report/sub-01_qc.png">sub-01_qc.png</a>' in html
    assert html.count("<a ") == 1 and "&ndash;" in html  # an empty cell stays empty

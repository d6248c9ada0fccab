"""The per-subject QC figure on a small synthetic volume, and the link helper of the study report."""

from __future__ import annotations

import numpy as np

from vbmkit.report.qc_figures import qc_image_link, subject_qc_figure


def test_subject_qc_figure_writes_a_png_and_link(tmp_path):
    shape = (20, 24, 18)
    p0 = np.zeros(shape)
    p0[3:-3, 3:-3, 3:-3] = 1
    p0[5:-5, 5:-5, 5:-5] = 2
    p0[8:-8, 8:-8, 7:-7] = 3
    t1 = p0 * 300 + np.random.default_rng(0).normal(0, 10, shape)
    mask = p0 > 0
    template = np.zeros((16, 18, 15))
    template[4:-4, 4:-4, 4:-4] = 0.8
    report = tmp_path / "pre" / "sub-01_T1w" / "report"
    subject_qc_figure(t1, p0, mask, (1.0, 1.2, 0.9), template * 1.1, template, (1.5, 1.5, 1.5),
                      report / "sub-01_T1w_qc.png", title="sub-01_T1w: IQR 85 % (B)")
    data = (report / "sub-01_T1w_qc.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert qc_image_link(report, "sub-01_T1w", relative_to=tmp_path) == "pre/sub-01_T1w/report/sub-01_T1w_qc.png"
    assert qc_image_link(report, "sub-02_T1w", relative_to=tmp_path) is None


def test_review_html_links_each_subject():
    from vbmkit.report.qc_figures import review_html

    qc = {"low_grade_percent": 70.0, "review": [
        {"name": "sub-02", "reasons": ["image quality 60.0 % (D)"], "qc_image": "../pre/sub-02/report/sub-02_qc.png"},
        {"name": "sub-<5>", "reasons": ["homogeneity outlier"], "qc_image": ""}]}
    html = review_html(qc)
    assert '<a href="qc/../pre/sub-02/report/sub-02_qc.png">sub-02</a>: image quality 60.0 % (D)' in html
    assert "<li>sub-&lt;5&gt;: homogeneity outlier</li>" in html
    assert review_html({"review": []}) == ""

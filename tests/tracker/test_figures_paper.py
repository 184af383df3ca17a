"""#18: figures fit for a paper, read back from the files: 300 dpi PNG, SVG text as <text>,
colormaps by metric sign, n voxels in every title, readable labels, the chance reference
of each metric; and the report's captions, methods section, target column, ceiling note."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from tracker.cli import app
from tracker.figures import draw, figure_data, report, standard

from .seed_db import feature_run
from .seed_scores import add_ceiling, add_fit

runner = CliRunner()
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def world(store):
    raw, warped = feature_run(), feature_run(warp="default")
    rng = np.random.default_rng(4)
    ids = np.arange(1, 11) * 7  # scattered voxel ids
    return {
        "ridge": add_fit(store, "S1", "ridge", rng.normal(0.3, 0.1, 10), voxel_ids=ids, frun=raw),
        "warp": add_fit(store, "S1", "ridge", rng.normal(0.35, 0.1, 10), voxel_ids=ids, frun=warped),
        "pls": add_fit(store, "S1", "pls", rng.normal(0.2, 0.1, 10), voxel_ids=ids, frun=raw),
    }


def _texts(svg_path):
    root = ET.parse(svg_path).getroot()
    return [("".join(t.itertext())).strip() for t in root.iter(f"{SVG}text")]


def test_saved_png_is_300_dpi_and_svg_text_is_editable(store, world, tmp_path):
    from PIL import Image

    fig = draw.draw_bars(figure_data.bars_data(store, "S1", "V4", "r", n_boot=50), "S1", "V4", "r")
    png, svg = standard.save(fig, tmp_path / "bars")
    dpi = Image.open(png).info["dpi"]
    assert dpi == pytest.approx((300, 300), abs=0.5)
    texts = _texts(svg)
    assert "S1 V4: per-voxel encoding accuracy (one condition per bar)" in texts  # text, not paths
    assert any(t.startswith("ridge, retina-warped") for t in texts)
    assert any(t.startswith("ridge, raw") for t in texts)
    assert not any("caffe" in t for t in texts)
    assert any("n = 10 voxels" in t for t in texts)


def test_chance_reference_per_metric(store, world):
    rows = figure_data.bars_data(store, "S1", "V4", "r", n_boot=0)
    stored = world["ridge"]["summary"]["validation"]["r_threshold_p05"]
    assert {r["r_threshold_p05"] for r in rows} == {stored}  # 0.15 as seeded
    assert draw.chance_reference("r", 1 / 119, stored) == (stored, "p < .05 (r = 0.150)")
    assert draw.chance_reference("r2_corr", 1 / 119)[0] == pytest.approx(1 / 119)
    assert draw.chance_reference("r2", 1 / 119)[0] == 0.0
    fig = draw.draw_bars(rows, "S1", "V4", "r")
    lines = [c for c in fig.axes[0].collections if c.get_label().startswith("validation: p < .05")]
    assert len(lines) == 1 and lines[0].get_segments()[0][0][1] == pytest.approx(stored)


def test_volume_colormap_follows_the_metric_sign_and_crops_to_the_voxels(store, world):
    signed = draw.draw_volume(figure_data.volume_data(store, world["ridge"]["_id"], metric="r"))
    image = signed.axes[0].images[0]
    assert image.get_cmap().name.startswith("RdBu_r")
    assert image.norm.vmin == pytest.approx(-image.norm.vmax)
    squared = draw.draw_volume(figure_data.volume_data(store, world["ridge"]["_id"], metric="r2_corr"))
    image = squared.axes[0].images[0]
    assert image.get_cmap().name.startswith("viridis") and image.norm.vmin == 0.0
    # ids 7..70 lie in the first column of the volume: the panel is the box around them
    assert image.get_array().shape[1] < 64 and image.get_array().shape[0] < 64
    assert "n = 10 voxels" in squared._suptitle.get_text()


def test_distribution_title_fits_and_legend_is_outside(store, world, tmp_path):
    rows = figure_data.distribution_data(store, "validation", "r", by="preprocessing",
                                         query={"config.method": "ridge"})
    fig = draw.draw_distributions(rows, "validation", "r")
    fig.canvas.draw()
    ax = fig.axes[0]
    title = ax.title.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= fig.bbox.width  # not clipped
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the boxes, not over them
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["raw", "retina-warped"]
    assert all("n = " in t.get_text() for t in ax.get_xticklabels())


def test_plot_defaults_to_r_like_everything_else(env, store, world, tmp_path):
    res = runner.invoke(app, ["plot", "bars", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert [p.rsplit("/", 1)[1] for p in json.loads(res.stdout)] == ["bars_S1_V4_r.png", "bars_S1_V4_r.svg"]
    assert "Pearson r" in " ".join(_texts(tmp_path / "bars_S1_V4_r.svg"))


def _html(store, **kw):
    return report.build_report(store, roi="V4", metric="r", figures=True, n_boot=50, **kw)


def test_report_captions_methods_target_and_ceiling_note(store, world):
    text = _html(store)
    assert "<h2>Methods and definitions</h2>" in text and "frac_ceiling = mean score / mean ceiling" in text
    assert "<th>target</th>" in text and "<td>voxels</td>" in text
    assert "<th>r_threshold_p05</th>" in text and "<th>chance_r2_corr</th>" not in text
    assert "Mean per-voxel score per method and preprocessing" in text  # a caption, not a file name
    assert "No noise ceiling is recorded" in text
    add_ceiling(store, "S1", np.arange(1, 11) * 7, np.full(10, 0.6))
    with_ceiling = _html(store)
    assert "No noise ceiling is recorded" not in with_ceiling
    table = with_ceiling.split('id="compare-validation"')[1].split("</table>")[0]
    rows = report.report_tables(store, "V4", "r", n_boot=0)["compare-validation"]
    assert len(rows) == 3
    for row in rows:  # every voxel's ceiling is 0.6: frac = mean r / 0.6
        assert row["frac_ceiling"] == pytest.approx(row["mean"] / 0.6)
        assert f"<td>{report.cell(row['frac_ceiling'])}</td><td>{row['pooling']}</td>" in table

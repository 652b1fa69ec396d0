"""The report's figures and lines read right: the per-class legend clear of the bars, whole layer counts
on the search's axis, "1 step"."""

from __future__ import annotations

import pytest

from retina_edge.quality.verify import VerifyReport

plt = pytest.importorskip("matplotlib.pyplot")


def test_the_per_class_legend_covers_no_bar():
    """Every class near AP 1: a legend inside the axes has no free corner and sat on the bars."""
    from retina_edge.quality.report import per_class_figure

    names = [f"class{i}" for i in range(6)]
    report = VerifyReport(precision="int8", target="cpu", images=50,
                          per_class={"reference": dict.fromkeys(names, 0.97), "deployed": dict.fromkeys(names, 0.95)})
    fig = per_class_figure(report, plt)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [patch.get_window_extent(renderer) for patch in ax.patches]
    assert len(bars) == 12 and not any(legend.overlaps(bar) for bar in bars)
    plt.close(fig)


def test_a_one_step_search_plot_counts_whole_layers():
    """A search that stopped at plain INT8 (one step): the axis read -0.04 .. 0.04 layers."""
    from retina_edge.quality.report import _trajectory_axes

    fig, ax = plt.subplots()
    _trajectory_axes(ax, [{"layers_kept_high": 0, "drop": 0.2, "drop_ci95": [-0.1, 0.5]}], budget=1.0, high="fp32",
                     total=110)
    fig.canvas.draw()
    low, high = ax.get_xlim()
    shown = [tick for tick in ax.get_xticks() if low <= tick <= high]
    assert shown == [0.0] and all(float(t).is_integer() for t in shown)
    plt.close(fig)


@pytest.mark.parametrize("steps,said", [(1, "; 1 step in 3 s."), (2, "; 2 steps in 3 s.")])
def test_the_search_summary_counts_steps_in_english(steps, said):
    from retina_edge.quality.report import search_summary

    step = {"layers_kept_high": 0, "drop": 0.1, "drop_ci95": [0.0, 0.2]}
    search = {"layers_kept_high": [], "layers_total": 110, "high_precision": "fp32", "ap_reference": 60.0,
              "ap_deployed": 59.9, "max_ap_drop": 1.0, "budget_met": True, "trajectory": [step] * steps, "seconds": 3.0,
              "ap_drop_ci95": [0.0, 0.2], "ap_drop": 0.1, "val_images": 50, "verdict": "met"}
    assert search_summary(search).endswith(said)


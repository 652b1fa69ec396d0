"""verify's AP gate on the interval of the drop, and its JUnit XML (one testcase per check)."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from retina_edge.errors import RetinaEdgeError
from retina_edge.quality.report import junit_xml
from retina_edge.quality.verify import VerifyReport, VerifyThresholds, _judge


def report_with_drop(drop: float, low: float, high: float, images: int = 200) -> VerifyReport:
    """A report whose deployed model lost ``drop`` points, 95% interval of the drop [low, high]."""
    report = VerifyReport(precision="int8", target="cpu", images=images, ap_vs_reference=0.9,
                          score_error={"mean": 0.001, "max": 0.01, "pairs": 10})
    se = (high - low) / 3.92
    report.coco = {"reference": {"AP": 0.5, "AP50": 0.8, "AP75": 0.5}, "deployed": {"AP": 0.5 - drop / 100, "AP50": 0.8, "AP75": 0.5},
                   "delta_points": {"AP": -drop, "AP50": 0.0, "AP75": 0.0},
                   "delta_points_ci95": {"AP": [-high, -low], "AP50": [-0.1, 0.1], "AP75": [-0.1, 0.1]},
                   "delta_points_se": {"AP": se, "AP50": 0.05, "AP75": 0.05},
                   "bootstrap": {"images": images, "resamples": 1000, "seed": 0, "level": 0.95}}
    return report


@pytest.mark.parametrize("drop,low,high,gate,passed", [
    (0.8, 0.5, 1.1, "lower", True),    # the point is within, the upper bound not: lower passes, upper fails
    (0.8, 0.5, 1.1, "upper", False),
    (1.2, 0.9, 1.5, "lower", True),    # the point is above 1.0 but the data do not prove it
    (1.6, 1.2, 2.0, "lower", False),   # proven above
    (0.3, 0.0, 0.6, "upper", True),    # proven within
])
def test_the_gate_judges_a_bound_of_the_drop(drop, low, high, gate, passed):
    report = report_with_drop(drop, low, high)
    _judge(report, VerifyThresholds(max_delta_ap=1.0, min_ap_vs_reference=0.75, max_mean_score_error=0.02, gate=gate))
    check = next(c for c in report.checks if c["name"] == "coco_ap_drop")
    assert check["passed"] == passed == report.passed
    assert f"{low:.2f} to {high:.2f}" in check["detail"]


def test_an_unresolved_upper_gate_says_how_many_images_would_resolve_it():
    report = report_with_drop(0.8, 0.5, 1.1, images=200)
    _judge(report, VerifyThresholds(max_delta_ap=1.0, min_ap_vs_reference=0.75, max_mean_score_error=0.02, gate="upper"))
    # half-width 0.3 at 200 images, margin 0.2: (0.3 / 0.2)^2 * 200 = 450 images
    assert "about 450 images would" in report.failures[0]


def test_unknown_gate_is_refused():
    with pytest.raises(RetinaEdgeError, match="unknown AP gate"):
        VerifyThresholds(max_delta_ap=1.0, min_ap_vs_reference=0.75, max_mean_score_error=0.02, gate="point")


def test_junit_has_one_testcase_per_check_and_fails_the_failing_one():
    report = report_with_drop(1.6, 1.2, 2.0)
    _judge(report, VerifyThresholds(max_delta_ap=1.0, min_ap_vs_reference=0.75, max_mean_score_error=0.02))
    root = ElementTree.fromstring(junit_xml(report, name="m.onnx"))
    suite = root.find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"ap_vs_reference", "mean_score_error", "coco_ap_drop"}
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    assert cases["coco_ap_drop"].find("failure") is not None and cases["ap_vs_reference"].find("failure") is None
    assert "1.20 to 2.00" in cases["coco_ap_drop"].find("failure").get("message")


@pytest.mark.parametrize("limit,value", [("max_delta_ap", float("nan")), ("max_delta_ap", -1.0), ("max_delta_ap", float("inf")),
                                         ("min_ap_vs_reference", 2.0), ("max_score_error", -1.0),
                                         ("max_mean_score_error", float("nan"))])
def test_a_limit_no_model_could_be_judged_by_is_refused(limit, value):
    """nan failed every model, -1 and inf passed every one, 2 of a fraction failed every one."""
    limits = {"max_delta_ap": 1.0, "min_ap_vs_reference": 0.75, "max_mean_score_error": 0.02, limit: value}
    with pytest.raises(RetinaEdgeError, match=f"the verify limit {limit} is") as raised:
        VerifyThresholds(**limits)
    assert raised.value.options == (limit,)


@pytest.mark.parametrize("flag,value", [("--max-delta-ap", "nan"), ("--max-delta-ap", "-1"), ("--max-delta-ap", "inf"),
                                        ("--min-ap-vs-reference", "2"), ("--max-score-error", "-1")])
def test_verify_refuses_such_a_limit_as_a_usage_error_before_any_work(flag, value, tmp_path, capsys):
    from retina_edge.cli.main import main

    # Nothing of the model, weights or images exists: the limit is judged first.
    assert main(["verify", "--model", str(tmp_path / "m.onnx"), "--weights", str(tmp_path / "w.pth"), "--images",
                 str(tmp_path / "images"), "--ann", str(tmp_path / "a.json"), flag, value]) == 2
    err = capsys.readouterr().err
    assert f"(see {flag})" in err and "the verify limit" in err and err.count("\n") == 1


@pytest.mark.parametrize("flags", [["--gate", "upper"], ["--max-delta-ap", "0.5"]])
def test_an_ap_gate_without_annotations_is_a_usage_error_not_a_silent_pass(flags, tmp_path, capsys):
    from retina_edge.cli.main import main

    assert main(["verify", "--model", str(tmp_path / "m.onnx"), "--weights", str(tmp_path / "w.pth"), "--images",
                 str(tmp_path / "images"), *flags]) == 2
    assert f"error: {flags[0]} judges the COCO AP drop against annotations: give --ann" in capsys.readouterr().err


@pytest.mark.parametrize("gate,passed", [("lower", True), ("upper", False)])
def test_an_ap_drop_on_too_few_images_is_unresolved_not_judged(gate, passed):
    """On 3 images the interval of a drop is no evidence: the upper gate cannot pass, the lower one
    cannot fail, and both say so."""
    report = report_with_drop(0.0, 0.0, 0.0, images=3)
    _judge(report, VerifyThresholds(max_delta_ap=1.0, min_ap_vs_reference=0.75, max_mean_score_error=0.02, gate=gate))
    check = next(c for c in report.checks if c["name"] == "coco_ap_drop")
    assert check["passed"] == passed == report.passed
    assert "unresolved, 3 images are too few for the interval to be evidence (at least 20)" in check["detail"]
    assert (report.notes if passed else report.failures) == [check["detail"]]

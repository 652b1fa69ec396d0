"""The DeepStream release guard: one table of facts (runtime/tensorrt/trt_releases.py, each with its source);
combinations that cannot work are refused in one line, the rest pass (sometimes with a warning)."""

from __future__ import annotations

import pytest

from retina_edge.deepstream.target import Deployment, Target, check_target
from retina_edge.errors import RetinaEdgeError
from retina_edge.runtime.tensorrt.trt_releases import DEEPSTREAM_RELEASES, has_dla, version_compatible_runs

ENGINE_10_3 = {"tensorrt_version": "10.3.0.26", "build": {}}


@pytest.mark.parametrize(("target", "deployment", "refusal"), [
    (Target(deepstream="7.1", jetpack="7.2"), Deployment(), "DeepStream 7.1 installs on JetPack 6.1 or 6.2, not 7.2"),
    (Target(deepstream="8.0", module="agx-orin"), Deployment(), "DeepStream 8.0 on Jetson supports thor, not agx-orin"),
    (Target(deepstream="7.1", tensorrt="10.16"), Deployment(), "DeepStream 7.1 runs TensorRT 10.3, not 10.16"),
    (Target(tensorrt="11.4.1"), Deployment(), "no DeepStream release runs TensorRT 11"),
    (Target(tensorrt="11.4.1"), Deployment(legacy_int8=True), "TensorRT 11.4.1 removed legacy INT8 calibration"),
    (Target(deepstream="7.1", module="orin-nano"), Deployment(dla_core=0), "orin-nano has no DLA cores"),
    (Target(module="agx-thor"), Deployment(dla_core=0), "agx-thor has no DLA cores"),
    (Target(deepstream="9.1", module="agx-orin"), Deployment(dla_core=0), "TensorRT 10.16 has no DLA support"),
    (Target(jetpack="7.2", module="agx-orin"), Deployment({"tensorrt_version": "10.16.1", "build": {"dla_core": 1}}),
     "TensorRT 10.16 has no DLA support"),
    (Target(), Deployment({"tensorrt_version": "11.4.1", "build": {}}), "built with TensorRT 11.4.1, but DeepStream runs "
                                                                         "TensorRT 10"),
    (Target(deepstream="7.1"), Deployment({"tensorrt_version": "10.16.1", "build": {"version_compatible": True}}),
     "built with TensorRT 10.16.1, newer than DeepStream 7.1's TensorRT 10.3"),
    (Target(deepstream="9.2"), Deployment(ENGINE_10_3), "a plain engine runs only on the release that built it"),
    (Target(deepstream="7.1", module="agx-orin"), Deployment(dla_core=0), "DLA runs FP16 and INT8 only"),
    (Target(deepstream="6.4"), Deployment(), "DeepStream 6.4 is not in retina-edge's release table"),
    (Target(module="nano"), Deployment(), "unknown Jetson module 'nano'"),
])
def test_combinations_that_cannot_work_are_refused(target, deployment, refusal):
    with pytest.raises(RetinaEdgeError, match=refusal):
        check_target(target, deployment)


@pytest.mark.parametrize(("target", "deployment", "warned"), [
    (Target(), Deployment(), ""),
    (Target(deepstream="7.1", jetpack="6.2", module="agx-orin"), Deployment(dla_core=1, precision="int8"), ""),
    (Target(jetpack="6.1"), Deployment(ENGINE_10_3), "exact TensorRT release"),
    (Target(deepstream="9.2"), Deployment({"tensorrt_version": "10.3.0", "build": {"version_compatible": True}}), ""),
    (Target(deepstream="7.1", tensorrt="10.3.0"), Deployment(legacy_int8=True), "legacy INT8 calibration is deprecated"),
])
def test_combinations_that_work_pass(target, deployment, warned):
    warnings = check_target(target, deployment)
    assert (warned in " ".join(warnings)) if warned else warnings == []


def test_the_table_agrees_with_itself():
    """Every DeepStream release runs TensorRT 10 (DeepStream has no TensorRT 11 release), and the DLA
    facts are the ones trt_plan's DLA check uses (10.7 the last 10.x; back from 11.4.1)."""
    assert all(r.tensorrt[0][0] == r.tensorrt[1][0] == 10 for r in DEEPSTREAM_RELEASES)
    assert [has_dla(v) for v in ((10, 3), (10, 7, 0), (10, 8), (11, 3), (11, 4, 0), (11, 4, 1))] == [
        True, True, False, False, False, True]
    assert version_compatible_runs((10, 3, 0, 26), (10, 3)) and not version_compatible_runs((10, 4), (10, 3))

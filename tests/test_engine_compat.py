"""Engine compatibility checks against NVIDIA's documented rules (runtime/tensorrt/trt_releases.py cites them):
version-compatible plans run on the same or a later release of their major, and across majors only
8 -> 10 and 10 -> 11; hardware-compatible plans need Ampere+ (compute capability >= 8.0)."""

from __future__ import annotations

import pytest

from retina_edge.config import ModelConfig
from retina_edge.contract import DeploymentMetadata, GraphTail
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import PreprocessConfig
from retina_edge.runtime.tensorrt.engine_file import check_compatible, read_engine_file, write_engine_file

METADATA = DeploymentMetadata(model=ModelConfig(), preprocess=PreprocessConfig(64, 64), tail=GraphTail("none"))


def engine(tmp_path, version: str, *, device: dict | None = None, **build):  # noqa: ANN001, ANN003, ANN201
    path = write_engine_file(tmp_path / f"{version}.engine", b"plan", metadata=METADATA, tensorrt_version=version,
                             device=device or {"name": "Orin", "compute_capability": "8.7"}, build=build)
    return read_engine_file(path)


def check(plan, version: str = "10.3.0", name: str = "Orin", cc: str | None = "8.7") -> None:  # noqa: ANN001
    check_compatible(plan, tensorrt_version=version, device_name=name, compute_capability=cc, source="m.engine")


@pytest.mark.parametrize(("built", "runtime"), [("10.3.0", "10.3.0"), ("10.3.0", "10.16.1"), ("10.16.0", "11.4.1"),
                                                ("8.6.1", "10.3.0")])
def test_version_compatible_plans_run_where_nvidia_says(tmp_path, built, runtime):
    check(engine(tmp_path, built, version_compatible=True), runtime)


def test_version_compatible_plan_from_a_newer_release_of_the_same_major_is_refused(tmp_path):
    with pytest.raises(RetinaEdgeError, match="built with TensorRT 10.16.0, newer than the installed 10.3.0: engines "
                                              "from newer releases do not run on older runtimes"):
        check(engine(tmp_path, "10.16.0", version_compatible=True), "10.3.0")


@pytest.mark.parametrize(("built", "runtime"), [("11.4.1", "10.16.0"), ("8.6.1", "11.4.1")])
def test_version_compatible_plans_across_unsupported_majors_are_refused(tmp_path, built, runtime):
    with pytest.raises(RetinaEdgeError, match=r"across major versions NVIDIA supports only 8 -> 10 and 10 -> 11"):
        check(engine(tmp_path, built, version_compatible=True), runtime)


def test_plain_plans_need_the_exact_release(tmp_path):
    with pytest.raises(RetinaEdgeError, match="built with TensorRT 10.3.0, but TensorRT 10.3.1 is installed"):
        check(engine(tmp_path, "10.3.0"), "10.3.1")


def test_hardware_compatible_plans_run_on_another_ampere_plus_gpu(tmp_path):
    check(engine(tmp_path, "10.3.0", hardware_compatible=True), name="NVIDIA A100", cc="8.0")
    check(engine(tmp_path, "10.3.0", hardware_compatible=True), name="NVIDIA H100", cc=None)  # CC unknown: TensorRT decides


def test_hardware_compatible_plans_are_refused_before_ampere(tmp_path):
    with pytest.raises(RetinaEdgeError, match=r"is running on a GPU of compute capability 7.5 \('Tesla T4', before "
                                              r"Ampere's 8.0\)"):
        check(engine(tmp_path, "10.3.0", hardware_compatible=True), name="Tesla T4", cc="7.5")
    built_on_turing = engine(tmp_path, "10.3.0", device={"name": "Tesla T4", "compute_capability": "7.5"},
                             hardware_compatible=True)
    with pytest.raises(RetinaEdgeError, match="was built on a GPU of compute capability 7.5"):
        check(built_on_turing, name="NVIDIA A100", cc="8.0")


def test_plain_plans_name_the_gpu_and_its_compute_capability(tmp_path):
    with pytest.raises(RetinaEdgeError, match=r"built for the GPU 'Orin' \(compute capability 8.7\), but this is "
                                              "'NVIDIA H100'"):
        check(engine(tmp_path, "10.3.0"), name="NVIDIA H100", cc="9.0")
    check(engine(tmp_path, "10.3.0", device={"name": "Orin"}))  # headers written before the compute capability

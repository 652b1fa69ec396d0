"""``retina-edge build -o m.engine`` / ``detect --cuda-graph`` / ``bench`` through the real API."""

from __future__ import annotations

import json

import pytest
from tiny import tiny_model

from retina_edge.model.checkpoints import save_checkpoint
from retina_edge.cli.main import main
from retina_edge.export.trt_plan import trt_major_version
from retina_edge.data.synth import SynthConfig, write_dataset


@pytest.fixture(scope="module")
def weights(tmp_path_factory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("cli")
    save_checkpoint(root / "w.pth", tiny_model())
    write_dataset(root / "data", SynthConfig(num_images=4, seed=3))
    return root


def test_build_detect_bench_an_engine(trt_env, weights, tmp_path, capsys):
    engine = tmp_path / "m.engine"
    cache = tmp_path / "timing.cache"
    assert main(["build", "--weights", str(weights / "w.pth"), "--imgsz", "96", "--fp16", "--batch", "1", "2", "4",
                 "--opt-level", "5", "--workspace", "0.5", "--timing-cache", str(cache), "-o", str(engine)]) == 0
    assert engine.is_file() and cache.is_file() and "(TensorRT engine)" in capsys.readouterr().out
    assert trt_env.builds[-1]["optimization_level"] == 5 and trt_env.builds[-1]["strongly_typed"]
    out = tmp_path / "dets.json"
    assert main(["detect", "--model", str(engine), "--cuda-graph", "--source", str(weights / "data" / "val"),
                 "--save-json", str(out)]) == 0
    assert isinstance(json.loads(out.read_text()), list) and trt_env.cuda.launches > 0
    assert main(["bench", "--model", str(engine), "--cuda-graph", "--iters", "3", "--warmup", "1"]) == 0


def test_legacy_flags_on_11_are_refused_before_any_work(trt_env, weights, tmp_path, capsys):
    code = main(["build", "--weights", str(weights / "w.pth"), "--imgsz", "96", "--legacy", "fp16", "-o", str(tmp_path / "m.engine")])
    if trt_major_version(trt_env.real.__version__) >= 11:
        assert code == 2 and "removed the FP16/INT8 builder flags" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())  # nothing exported first
    else:
        assert code == 0 and trt_env.builds[-1]["flags"] == ["FP16"]

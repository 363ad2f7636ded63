"""The TensorRT engine cache on the real file system, with an injected builder (no GPU needed)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pixelrt.errors import PixelrtError
from pixelrt.runtime.engine_cache import DeviceInfo, EngineCache, engine_key

ORIN = DeviceInfo("Orin (nvgpu)", "8.7", "10.3.0")
A100 = DeviceInfo("NVIDIA A100-SXM4-40GB", "8.0", "10.3.0")
OPTS = {"batch": [1, 8, 64], "workspace_mib": 2048, "tf32": True, "dla_core": None}


class FakeBuilder:
    def __init__(self):
        self.calls = []

    def __call__(self, onnx_path: Path, options: dict) -> bytes:
        self.calls.append((onnx_path.name, json.dumps(options, sort_keys=True)))
        return b"ENGINE:" + onnx_path.read_bytes()[:16] + json.dumps(options, sort_keys=True).encode()


@pytest.fixture
def onnx_file(tmp_path):
    p = tmp_path / "bundle" / "step.onnx"
    p.parent.mkdir()
    p.write_bytes(b"fake onnx graph bytes " * 10)
    return p


def test_key_changes_with_every_ingredient():
    base = engine_key("a" * 64, ORIN, OPTS)
    assert len(base) == 20 and base == engine_key("a" * 64, ORIN, dict(reversed(list(OPTS.items()))))
    others = {engine_key("b" * 64, ORIN, OPTS), engine_key("a" * 64, A100, OPTS),
              engine_key("a" * 64, DeviceInfo(ORIN.gpu, ORIN.compute_capability, "10.7.0"), OPTS),
              engine_key("a" * 64, DeviceInfo(ORIN.gpu, "8.6", ORIN.tensorrt), OPTS),
              engine_key("a" * 64, ORIN, {**OPTS, "tf32": False}), engine_key("a" * 64, ORIN, {**OPTS, "batch": [1, 8, 32]})}
    assert base not in others and len(others) == 6


def test_build_once_then_reuse_and_atomic_files(onnx_file, tmp_path):
    logs, build = [], FakeBuilder()
    cache = EngineCache(ORIN, tmp_path / "cache", log=logs.append)
    first = cache.get_or_build(onnx_file, OPTS, build)
    again = cache.get_or_build(onnx_file, OPTS, build)
    assert first == again and len(build.calls) == 1
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    engines = [f for f in files if f.endswith(".engine")]
    assert len(engines) == 1 and engines[0].startswith("step-")
    assert not [f for f in files if ".tmp-" in f]  # nothing half-written left behind
    record = json.loads((tmp_path / "cache" / engines[0].replace(".engine", ".json")).read_text())
    assert record["device"]["gpu"] == ORIN.gpu and record["options"] == OPTS and record["engine_bytes"] == len(first)
    assert any("reusing" in line for line in logs)
    # a different option is a different engine
    cache.get_or_build(onnx_file, {**OPTS, "tf32": False}, build)
    assert len(build.calls) == 2


def test_engine_from_another_gpu_or_trt_is_rebuilt_never_loaded(onnx_file, tmp_path):
    root, build = tmp_path / "cache", FakeBuilder()
    EngineCache(A100, root, log=lambda s: None).get_or_build(onnx_file, OPTS, build)
    logs = []
    data = EngineCache(ORIN, root, log=logs.append).get_or_build(onnx_file, OPTS, build)
    assert len(build.calls) == 2 and data  # built again for this GPU
    assert any("A100" in line and "not portable" in line for line in logs)
    # an entry copied over this machine's key (same file names, foreign record) is rejected too
    engine = next(root.glob("step-*.engine"))
    records = {p: json.loads(p.read_text()) for p in root.glob("*.json")}
    orin_meta = next(p for p, r in records.items() if r["device"]["gpu"] == ORIN.gpu)
    rec = records[orin_meta]
    rec["device"] = {**rec["device"], "tensorrt": "10.0.1"}
    orin_meta.write_text(json.dumps(rec))
    logs.clear()
    EngineCache(ORIN, root, log=logs.append).get_or_build(onnx_file, OPTS, build)
    assert len(build.calls) == 3 and any("different device" in line for line in logs), logs
    assert engine.exists()


def test_truncated_engine_is_rebuilt(onnx_file, tmp_path):
    build, logs = FakeBuilder(), []
    cache = EngineCache(ORIN, tmp_path / "c", log=logs.append)
    good = cache.get_or_build(onnx_file, OPTS, build)
    engine = next((tmp_path / "c").glob("*.engine"))
    engine.write_bytes(good[:5])
    assert cache.get_or_build(onnx_file, OPTS, build) == good and len(build.calls) == 2
    assert any("sha256" in line for line in logs)


def test_changed_onnx_is_a_new_engine(onnx_file, tmp_path):
    build = FakeBuilder()
    cache = EngineCache(ORIN, tmp_path / "c", log=lambda s: None)
    a = cache.get_or_build(onnx_file, OPTS, build)
    onnx_file.write_bytes(b"another graph" * 10)
    b = cache.get_or_build(onnx_file, OPTS, build)
    assert a != b and len(build.calls) == 2


def test_failed_build_leaves_no_entry(onnx_file, tmp_path):
    cache = EngineCache(ORIN, tmp_path / "c", log=lambda s: None)

    def boom(p, o):
        raise PixelrtError("TensorRT could not build step.onnx: out of memory")

    with pytest.raises(PixelrtError, match="out of memory"):
        cache.get_or_build(onnx_file, OPTS, boom)
    assert not list((tmp_path / "c").glob("*.engine")) and not list((tmp_path / "c").glob("*.json"))
    with pytest.raises(PixelrtError, match="produced nothing"):
        cache.get_or_build(onnx_file, OPTS, lambda p, o: b"")


WORKER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    from pixelrt.runtime.engine_cache import DeviceInfo, EngineCache
    onnx, root, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    def build(p, o):
        with open(log, "a") as f:
            f.write(f"start {time.monotonic()}\\n")
        time.sleep(3.0)  # long enough that the second process arrives while the lock is held
        with open(log, "a") as f:
            f.write(f"end {time.monotonic()}\\n")
        return b"engine-bytes"

    data = EngineCache(DeviceInfo("GPU", "8.7", "10.3"), root, log=lambda s: print(s, flush=True)).get_or_build(
        onnx, {"batch": [1, 1, 4]}, build)
    print("GOT", data.decode(), flush=True)
''')


def test_two_processes_never_build_the_same_engine_at_once(onnx_file, tmp_path):
    log = tmp_path / "builds.log"
    def start():
        return subprocess.Popen([sys.executable, "-c", WORKER, str(onnx_file), str(tmp_path / "c"), str(log)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [start()]
    deadline = time.monotonic() + 60
    while not (log.exists() and "start" in log.read_text()):  # the first process holds the lock and builds
        assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].communicate()
        time.sleep(0.05)
    procs.append(start())  # ... so the second one must wait for it, then reuse its engine
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [o[0].strip().splitlines()[-1] for o in outs] == ["GOT engine-bytes"] * 2
    assert log.read_text().split()[::2] == ["start", "end"]  # one build in total
    waited = [o[0] for o in outs if "waiting for pid" in o[0]]
    built = [o[0] for o in outs if "built " in o[0]]
    assert len(built) == 1 and len(waited) + sum("reusing" in o[0] for o in outs) == 1

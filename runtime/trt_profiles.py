"""TensorRT build profiles (server, Jetson Orin Nano, Jetson AGX Orin) and the memory estimate.

Precision is *not* a build option: TensorRT 11 removed the FP16/INT8 builder flags and implicit
calibrators, and on 10.x pixelrt builds strongly typed networks too, so an engine runs in the
precision its ONNX graph is written in. "FP16 by default on Jetson" therefore means: deploy the FP16
bundle that `pixelrt calibrate` writes; building an FP32 bundle with a Jetson profile works but
prints that recommendation (see :func:`precision_advice`).

A profile fixes what a board can afford: the builder's workspace pool (Jetson memory is shared by
CPU and GPU, so the pool must leave room for the OS, the process and the engine itself), the
builder optimisation level (higher = longer builds, sometimes faster kernels), the optimization
profile's batch range, DLA with GPU fallback (AGX Orin), and TF32 (off for parity runs).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from pixelrt.errors import PixelrtError

MIB = 2 ** 20


@dataclass(frozen=True)
class BuildProfile:
    name: str
    workspace_mib: int          # IBuilderConfig memory pool WORKSPACE limit
    optimization_level: int     # IBuilderConfig.builder_optimization_level, 0..5 (TensorRT's default 3)
    batch: tuple                # optimization profile (min, opt, max) of the batch axis
    dla_core: int | None        # default DLA core for the full graph (None: GPU only)
    dla_cores: int              # DLA cores the board has
    tf32: bool                  # allow TF32 tensor-core math in FP32 layers (off for parity runs)
    board_memory_gib: float     # memory of the smallest board of this kind (shared with the CPU on Jetson)
    precision: str              # the bundle precision to deploy (see module docstring)
    note: str

    def with_options(self, batch_max: int | None = None, batch_opt: int | None = None, dla_core: int | None = -1,
                     tf32: bool | None = None, workspace_mib: int | None = None,
                     optimization_level: int | None = None) -> "BuildProfile":
        """A copy with command-line overrides; dla_core=-1 keeps the profile's, None turns DLA off."""
        lo, opt, hi = self.batch
        hi = hi if batch_max is None else batch_max
        opt = min(opt if batch_opt is None else batch_opt, hi)
        if hi < 1 or opt < lo:
            raise PixelrtError(f"batch range {lo}..{hi} (opt {opt}) is empty; --max-batch must be at least 1")
        out = replace(self, batch=(lo, opt, hi), tf32=self.tf32 if tf32 is None else tf32,
                      dla_core=self.dla_core if dla_core == -1 else dla_core,
                      workspace_mib=workspace_mib or self.workspace_mib,
                      optimization_level=self.optimization_level if optimization_level is None else optimization_level)
        if out.dla_core is not None and not 0 <= out.dla_core < self.dla_cores:
            have = f"cores 0..{self.dla_cores - 1}" if self.dla_cores else "no DLA"
            raise PixelrtError(f"--dla-core {out.dla_core}: the {self.name} profile's board has {have}; "
                               "use jetson-agx-orin for DLA, or leave --dla-core out")
        if not 0 <= out.optimization_level <= 5:
            raise PixelrtError(f"builder optimization level must be 0..5, got {out.optimization_level}")
        return out

    def options(self, graph: str) -> dict:
        """The build options of one bundle graph: everything that changes the engine (the cache key's part).

        DLA applies to the full graph only: the step graph is int64 gathers and batch-1 matmuls, which
        DLA cannot run (they would all fall back to the GPU, with a DLA<->GPU hop per call).
        """
        d = asdict(self)
        for k in ("board_memory_gib", "precision", "note", "dla_cores"):
            d.pop(k)
        d["batch"] = list(self.batch)
        d["dla_core"] = self.dla_core if graph == "full" else None
        d["gpu_fallback"] = d["dla_core"] is not None
        return d


PROFILES = {
    "server": BuildProfile("server", workspace_mib=4096, optimization_level=3, batch=(1, 64, 256), dla_core=None,
                           dla_cores=0, tf32=True, board_memory_gib=16.0, precision="fp32",
                           note="discrete GPU: generous workspace, batch up to 256"),
    "jetson-orin-nano": BuildProfile("jetson-orin-nano", workspace_mib=512, optimization_level=3, batch=(1, 1, 16),
                                     dla_core=None, dla_cores=0, tf32=True, board_memory_gib=4.0, precision="fp16",
                                     note="4/8 GB shared by CPU and GPU, no DLA: small workspace and batch range"),
    "jetson-agx-orin": BuildProfile("jetson-agx-orin", workspace_mib=2048, optimization_level=3, batch=(1, 8, 64),
                                    dla_core=0, dla_cores=2, tf32=True, board_memory_gib=32.0, precision="fp16",
                                    note="32/64 GB shared; the full graph on DLA core 0 with GPU fallback"),
}


def get_profile(name: str) -> BuildProfile:
    if name not in PROFILES:
        raise PixelrtError(f"unknown build profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]


def precision_advice(profile: BuildProfile, bundle_precision: str) -> str | None:
    """One line when the bundle's precision is not what the profile's board should run."""
    if profile.precision == "fp16" and bundle_precision == "fp32":
        return (f"{profile.name}: this bundle is FP32; Jetson boards run FP16 about twice as fast in half the memory. "
                "Precision lives in the graph (TensorRT 11 has no FP16 builder flag): deploy the FP16 bundle written by "
                "`pixelrt calibrate` (issue 6) and check it with `pixelrt parity`")
    if profile.dla_core is not None and bundle_precision == "fp32":
        return (f"{profile.name}: DLA runs FP16/INT8 layers only, so an FP32 full graph falls back to the GPU "
                "entirely; the FP16 bundle from `pixelrt calibrate` is the one that uses the DLA")
    return None


# -- memory estimate -------------------------------------------------------------------
@dataclass
class MemoryEstimate:
    """Device memory one sampling/evaluation process needs, before TensorRT's own allocations are known."""

    weights: dict          # graph -> bytes of initializers (+ Constant tensors)
    activations: dict      # graph -> bytes: every intermediate tensor at the max batch (an upper bound, no reuse)
    state: int             # step-loop state at the max batch, twice for ping-pong `replace` states
    loop_io: int           # noise, forced values and the loop's per-step results at the max batch
    workspace: int         # the profile's builder/runtime workspace pool
    batch: int
    board_bytes: int

    @property
    def total(self) -> int:
        return sum(self.weights.values()) + sum(self.activations.values()) + self.state + self.loop_io + self.workspace

    def table(self, name: str) -> str:
        rows = [(f"weights ({g})", b) for g, b in self.weights.items()]
        rows += [(f"activations ({g}, upper bound)", b) for g, b in self.activations.items()]
        rows += [("step-loop state (ping-pong, row outputs)", self.state), ("noise + per-step results", self.loop_io),
                 ("workspace pool (profile)", self.workspace), ("total", self.total)]
        w = max(len(r[0]) for r in rows)
        lines = [f"memory estimate at batch {self.batch} ({name}):"]
        lines += [f"  {label:{w}s} {b / MIB:10.2f} MiB" for label, b in rows]
        share = self.total / self.board_bytes
        verdict = "fits" if share < 0.5 else "tight" if share < 0.8 else "does NOT fit"
        lines.append(f"  = {100 * share:.1f}% of the {self.board_bytes / 2**30:.0f} GiB board: {verdict} "
                     "(the OS and the process need the rest on a shared-memory Jetson)")
        return "\n".join(lines)


def graph_memory(path, batch: int) -> tuple[int, int]:
    """(weight bytes, activation upper bound at ``batch``) of an ONNX graph, from its initializers and
    shape-inferred intermediate tensors (symbolic axes are taken as the batch)."""
    from pixelrt.runtime.trt_support import load_model

    model = load_model(path)
    g = model.graph
    weights = sum(_tensor_bytes(t) for t in g.initializer)
    weights += sum(_tensor_bytes(a.t) for n in g.node if n.op_type == "Constant" for a in n.attribute if a.name == "value")
    acts = 0
    for vi in list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in tt.shape.dim]
        acts += int(np.prod(dims, dtype=np.int64)) * _itemsize(tt.elem_type)
    return weights, acts


def _itemsize(elem_type: int) -> int:
    return {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}.get(elem_type, 4)


def _tensor_bytes(t) -> int:
    n = int(np.prod(list(t.dims), dtype=np.int64)) if len(t.dims) else 1
    return n * _itemsize(t.data_type)


def estimate_memory(bundle, profile: BuildProfile) -> MemoryEstimate:
    """Weights and activations per graph, the loop's state and buffers, and the workspace, at the
    profile's max batch."""
    batch = profile.batch[2]
    weights, acts = {}, {}
    from pixelrt.runtime.trt_support import trt_graphs

    for key, spec in trt_graphs(bundle).items():
        weights[key], acts[key] = graph_memory(bundle.root / spec.file, batch)
    state = 0
    for s in bundle.state:
        per_image = int(np.prod(s.shape[1:])) * np.dtype(s.dtype).itemsize
        # replace: ping-pong pair; row: the state and the row graph's output it is copied from
        state += per_image * batch * (2 if s.update in ("replace", "row") else 1)
    img, sched = bundle.image, bundle.manifest.schedule
    loop_io = 0
    if sched is not None:  # bundles with a step loop of their own (a VAE's or PixelVAE's top has none)
        steps = img.height * img.width * sched.substeps_per_pixel
        cps = sched.channels_per_substep(img.channels)
        loop_io = batch * (steps * sched.noise_per_substep * 4 + steps * cps * (8 + 8 + 4) + img.channels * 8)
    if any(s.update == "row" for s in bundle.state):  # the device loop's finished row (int64) for the row graph
        loop_io += batch * img.channels * img.width * 8
    return MemoryEstimate(weights, acts, state, loop_io, profile.workspace_mib * MIB, batch,
                          int(profile.board_memory_gib * 2 ** 30))

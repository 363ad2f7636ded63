"""Graph structure: the PixelCNN step graph stays small after ONNX Runtime's optimiser (at batch 1 a step
is almost all per-node overhead; docs/architecture.md, "Step-loop speed"). Counts, never times."""
from pixelrt.bench.step_speed import node_counts


def test_pixelcnn_step_graph_node_count(grey_bundle):
    model, bundle = grey_bundle
    blocks = model.config.blocks
    counts = node_counts(bundle.graph_path("step"), threads=1)
    # measured: 90 optimised nodes for ref28's 8 blocks (89 before round 4's levels-first sampler; 5 per block:
    # Relu, two FusedGemm, a Gemm and the Squeeze of its window, which comes out of one Split); before this
    # layout ref28 had 132
    assert counts["optimized"] <= 50 + 5 * blocks, counts
    assert counts["optimized_ops"].get("Unsqueeze", 0) <= 2, counts  # the new columns leave as one Concat


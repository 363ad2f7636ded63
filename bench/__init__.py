"""`pixelrt bench`: one table of benchmark rows (``bench/specs.py``) and the measurements that time them,
grouped by what they measure (``bench/run.py``: MEASUREMENTS). Times PyTorch beside ONNX Runtime, so it
needs the export extra; the GPU runtimes' timing itself is torch-free (``runtime/gpu_bench.py``)."""

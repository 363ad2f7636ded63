"""Serving pixelrt bundles on Triton Inference Server (docs/serving.md). Torch-free.

* ``repository``: ``pixelrt triton BUNDLE -o REPO`` -- a model repository whose configs come from the manifest
  (``config``) and are checked against Triton's own model-config schema;
* ``triton_models``: the Python-backend models (sampling merges concurrent requests into one step loop,
  ``batching``; likelihood runs the full graph);
* ``server``: ``pixelrt serve`` -- a real ``tritonserver`` (nvidia-pytriton's) on this machine;
* ``client``: ``pixelrt.connect(url)`` / ``pixelrt sample --url`` -- sample and score as from a local bundle.
"""

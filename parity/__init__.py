"""Torch-side parity: a PyTorch checkpoint against its bundle, one module per concept.

``parity/table.py`` holds the tables the CLI looks up by the model's kind (its registry entry's ``kind``,
one of ``pixelrt.bundle.KINDS``): ``PARITY`` (the parity report of every kind), ``FIELDS`` (the receptive
field measured by autograd) and ``PRECISION`` (the runtime x precision table of several bundles). The
comparisons and the report itself are torch-free (``pixelrt.runtime.parity``); this package runs PyTorch.
"""

"""Export: a model that implements the step protocol (or describes itself with ``export_spec``)
becomes a validated ONNX bundle. One exporter and one validator for every family
(docs/export-your-model.md, docs/architecture.md)."""
from pixelrt.export.exporter import ExportResult, export_bundle

__all__ = ["ExportResult", "export_bundle"]

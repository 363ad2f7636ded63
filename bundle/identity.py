"""The identity a bundle writes into each of its ONNX graphs (``metadata_props``).

Export stamps every graph with the bundle's format version, kind, image shape, levels, the
graph's role and the state names; the runtime compares them with the manifest when it opens the
graph. A graph exported for another image shape, number of levels, kind or state layout is then
refused even when someone recomputed its checksum. (A graph of the same shape with other weights
is caught by the reference-batch check instead.)
"""
from __future__ import annotations

from pixelrt.bundle.manifest import FORMAT_VERSION, Manifest

PREFIX = "pixelrt."


def graph_identity(manifest: Manifest, graph: str) -> dict[str, str]:
    img = manifest.image
    return {
        f"{PREFIX}format_version": str(FORMAT_VERSION),
        f"{PREFIX}kind": manifest.kind,
        f"{PREFIX}graph": graph,
        f"{PREFIX}image": f"{img.channels}x{img.height}x{img.width}",
        f"{PREFIX}levels": str(img.levels),
        f"{PREFIX}states": ",".join(s.name for s in manifest.state),
    }


def identity_mismatch(manifest: Manifest, graph: str, found: dict[str, str]) -> str | None:
    """None when ``found`` (a graph's metadata) carries this manifest's identity, else what differs."""
    want = graph_identity(manifest, graph)
    if not any(k.startswith(PREFIX) for k in found):
        return "it carries no pixelrt identity (it was not written by `pixelrt export` for this bundle)"
    diffs = [f"{k[len(PREFIX):]} {found.get(k)!r} (the manifest says {v!r})" for k, v in want.items()
             if found.get(k) != v]
    return None if not diffs else "it was exported for another bundle: " + ", ".join(diffs)

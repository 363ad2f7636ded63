"""The bundle contract (torch-free, numpy only): the typed manifest, strict loading, containment and
checksums. Written by export and calibration, read by the runtime (docs/bundle.md)."""
from pixelrt.bundle.files import sha256_file
from pixelrt.bundle.loader import Bundle, GraphFile, load_bundle, sub_bundles
from pixelrt.bundle.manifest import FORMAT, FORMAT_VERSION, KINDS, MANIFEST, REEXPORT, Manifest
from pixelrt.bundle.records import (BATCH, ConditioningSpec, FileRecord, GraphSpec, HeadSpec, ImageSpec, LatentSpec,
                                    PartSpec, ReferenceSpec, TensorSpec)
from pixelrt.bundle.state import RING_KINDS, STATE_UPDATES, StateSpec, StepSchedule

__all__ = ["BATCH", "FORMAT", "FORMAT_VERSION", "KINDS", "MANIFEST", "REEXPORT", "RING_KINDS", "STATE_UPDATES",
           "Bundle", "ConditioningSpec", "FileRecord", "GraphFile", "GraphSpec", "HeadSpec", "ImageSpec",
           "LatentSpec", "Manifest", "PartSpec", "ReferenceSpec", "StateSpec", "StepSchedule", "TensorSpec",
           "load_bundle", "sha256_file", "sub_bundles"]

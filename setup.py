"""pixelrt: ship autoregressive image models and VAEs from PyTorch to ONNX Runtime and TensorRT.

The repository keeps one folder per layer of the design card (models/, export/,
runtime/, calibration/) at its root; package_dir installs them as subpackages
of ``pixelrt`` so that ``pip install pixelrt[runtime]`` on a Jetson gets the
torch-free runtime and nothing else.
"""
from setuptools import setup

PACKAGES = {
    "pixelrt": "pixelrt",
    "pixelrt.bundle": "bundle",
    "pixelrt.models": "models",
    "pixelrt.export": "export",
    "pixelrt.runtime": "runtime",
    "pixelrt.calibration": "calibration",
    "pixelrt.parity": "parity",
    "pixelrt.bench": "bench",
}

RUNTIME = ["numpy>=1.24", "onnxruntime>=1.18", "tqdm>=4.60", "pillow>=9"]
EXPORT = ["torch>=2.4", "onnx>=1.16", "onnxscript>=0.1", "safetensors>=0.4"]

setup(
    name="pixelrt",
    version="0.1.0",
    description="Autoregressive image models and VAEs from PyTorch to ONNX Runtime and TensorRT, with likelihood parity",
    python_requires=">=3.10",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    install_requires=["numpy>=1.24"],
    extras_require={
        "runtime": RUNTIME,
        # scikit-learn ships the embedded `digits` data set (no download).
        "data": ["scikit-learn>=1.2"],
        "export": RUNTIME + EXPORT + ["scikit-learn>=1.2"],
        # GPU runtimes (docs/gpu.md): ORT CUDA/TensorRT providers, native TensorRT, cuda-python for device
        # memory, streams, CUDA graphs and NVRTC (never torch), onnx for `pixelrt doctor` and memory estimates.
        "gpu": ["onnxruntime-gpu>=1.18", "tensorrt>=10", "cuda-python>=12", "onnx>=1.16"],
        # FP16 / INT8 bundles: onnxruntime ships the float16 converter and the Q/DQ quantizer; they need onnx.
        "calibrate": RUNTIME + ["onnx>=1.16", "packaging"],
        # hypothesis: the property-based pass over hostile manifests (tests/bundle/)
        "test": RUNTIME + EXPORT + ["scikit-learn>=1.2", "pytest>=7", "hypothesis>=6"],
    },
    entry_points={"console_scripts": ["pixelrt=pixelrt.cli:main"]},
)

"""The onnx-tensorrt operator support matrix, as data.

Source: onnx/onnx-tensorrt docs/operators.md at the "ONNX-TensorRT 10.1 GA release" commit
(96e781103cfc, 2024-06-17), the newest published matrix: "TensorRT 10.0 supports operators in the
inclusive range of opset 9 to opset 20". One line per operator: ``Name: Y|N TYPES`` where TYPES are
the data types TensorRT accepts for the operator's data input. The per-operator restrictions of the
matrix's last column that pixelrt checks are encoded in :mod:`pixelrt.runtime.trt_support`.
Regenerate from a newer docs/operators.md when TensorRT publishes one, and bump ``MATRIX_VERSION``.
"""
from __future__ import annotations

MATRIX_VERSION = "onnx-tensorrt 10.1 (docs/operators.md @ 96e781103cfc)"
OPSET_RANGE = (9, 20)
# "TensorRT supports the following ONNX data types" (same file); DOUBLE is cast down to FLOAT with clamping,
# UINT8 is only allowed as a network input or output; INT8/INT4/FP8 only through Q/DQ.
NETWORK_DTYPES = ("DOUBLE", "FP32", "FP16", "BF16", "INT32", "INT64", "FP8", "INT8", "INT4", "UINT8", "BOOL")

_MATRIX = """\
Abs: Y FP32 FP16 BF16 INT32 INT64
Acos: Y FP32 FP16 BF16
Acosh: Y FP32 FP16 BF16
Add: Y FP32 FP16 BF16 INT32 INT64
AffineGrid: N
And: Y BOOL
ArgMax: Y FP32 FP16 BF16 INT32 INT64
ArgMin: Y FP32 FP16 BF16 INT32 INT64
Asin: Y FP32 FP16 BF16
Asinh: Y FP32 FP16 BF16
Atan: Y FP32 FP16 BF16
Atanh: Y FP32 FP16 BF16
AveragePool: Y FP32 FP16 BF16
BatchNormalization: Y FP32 FP16 BF16
Bernoulli: N
BitShift: N
BitwiseAnd: N
BitwiseNot: N
BitwiseOr: N
BitwiseXor: N
BlackmanWindow: N
Cast: Y FP32 FP16 BF16 INT32 INT64 UINT8 BOOL
CastLike: Y FP32 FP16 BF16 INT32 INT64 UINT8 BOOL
Ceil: Y FP32 FP16 BF16
Col2Im: N
Celu: Y FP32 FP16 BF16
CenterCropPad: N
Clip: Y FP32 FP16 BF16
Compress: N
Concat: Y FP32 FP16 BF16 INT32 INT64 BOOL
ConcatFromSequence: N
Constant: Y FP32 FP16 BF16 INT32 INT64 BOOL
ConstantOfShape: Y FP32 FP16 BF16 INT32 INT64 BOOL
Conv: Y FP32 FP16 BF16
ConvInteger: N
ConvTranspose: Y FP32 FP16 BF16
Cos: Y FP32 FP16 BF16
Cosh: Y FP32 FP16 BF16
CumSum: Y FP32 FP16 BF16
DFT: N
DeformConv: Y FP32 FP16
DepthToSpace: Y FP32 FP16 BF16 INT32 INT64
DequantizeLinear: Y INT8 FP8 INT4
Det: N
Div: Y FP32 FP16 BF16 INT32 INT64
Dropout: Y FP32 FP16 BF16
DynamicQuantizeLinear: N
Einsum: Y FP32 FP16 BF16
Elu: Y FP32 FP16 BF16
Equal: Y FP32 FP16 BF16 INT32 INT64
Erf: Y FP32 FP16 BF16
Exp: Y FP32 FP16 BF16
Expand: Y FP32 FP16 BF16 INT32 INT64 BOOL
EyeLike: Y FP32 FP16 BF16 INT32 INT64 BOOL
Flatten: Y FP32 FP16 BF16 INT32 INT64 BOOL
Floor: Y FP32 FP16 BF16
Gather: Y FP32 FP16 BF16 INT32 INT64 BOOL
GatherElements: Y FP32 FP16 BF16 INT32 INT64 BOOL
GatherND: Y FP32 FP16 BF16 INT32 INT64 BOOL
Gelu: Y FP32 FP16 BF16 INT8 INT32 INT64
Gemm: Y FP32 FP16 BF16
GlobalAveragePool: Y FP32 FP16 BF16
GlobalLpPool: Y FP32 FP16 BF16
GlobalMaxPool: Y FP32 FP16 BF16
Greater: Y FP32 FP16 BF16 INT32 INT64
GreaterOrEqual: Y FP32 FP16 BF16 INT32 INT64
GridSample: Y FP32 FP16
GroupNormalization: Y FP32 FP16 BF16
GRU: Y FP32 FP16 BF16
HammingWindow: N
HannWindow: N
HardSigmoid: Y FP32 FP16 BF16
HardSwish: Y FP32 FP16 BF16
Hardmax: Y FP32 FP16 BF16
Identity: Y FP32 FP16 BF16 INT32 INT64 BOOL
If: Y FP32 FP16 BF16 INT32 INT64 BOOL
ImageScaler: Y FP32 FP16 BF16
ImageDecoder: N
InstanceNormalization: Y FP32 FP16 BF16
IsInf: Y FP32 FP16 BF16
IsNaN: Y FP32 FP16 BF16 INT32 INT64
LayerNormalization: Y FP32 FP16 BF16
LeakyRelu: Y FP32 FP16 BF16
Less: Y FP32 FP16 BF16 INT32 INT64
LessOrEqual: Y FP32 FP16 BF16 INT32 INT64
Log: Y FP32 FP16 BF16
LogSoftmax: Y FP32 FP16 BF16
Loop: Y FP32 FP16 BF16 INT32 INT64 BOOL
LRN: Y FP32 FP16 BF16
LSTM: Y FP32 FP16 BF16
LpNormalization: Y FP32 FP16 BF16
LpPool: Y FP32 FP16 BF16
MatMul: Y FP32 FP16 BF16
MatMulInteger: N
Max: Y FP32 FP16 BF16 INT32 INT64
MaxPool: Y FP32 FP16 BF16
MaxRoiPool: N
MaxUnpool: N
Mean: Y FP32 FP16 BF16 FP8 INT32 INT64
MeanVarianceNormalization: Y FP32 FP16 BF16
MelWeightMatrix: N
Min: Y FP32 FP16 BF16 INT32 INT64
Mish: Y FP32 FP16
Mod: Y FP32 FP16 BF16 INT32 INT64
Mul: Y FP32 FP16 BF16 INT32 INT64
Multinomial: N
Neg: Y FP32 FP16 BF16 INT32 INT64
NegativeLogLikelihoodLoss: N
NonMaxSuppression: Y FP32 FP16
NonZero: Y FP32 FP16
Not: Y BOOL
OneHot: Y FP32 FP16 BF16 INT32 INT64 BOOL
Optional: N
OptionalGetElement: N
OptionalHasElement: N
Or: Y BOOL
Pad: Y FP32 FP16 BF16 INT32 INT64
ParametricSoftplus: Y FP32 FP16 BF16
Pow: Y FP32 FP16 BF16
PRelu: Y FP32 FP16 BF16
QLinearConv: N
QLinearMatMul: N
QuantizeLinear: Y FP32 FP16 BF16
RandomNormal: Y FP32 FP16 BF16
RandomNormalLike: Y FP32 FP16 BF16
RandomUniform: Y FP32 FP16 BF16
RandomUniformLike: Y FP32 FP16 BF16
Range: Y FP32 FP16 BF16 INT32 INT64
Reciprocal: Y FP32 FP16 BF16
ReduceL1: Y FP32 FP16 BF16 INT32 INT64
ReduceL2: Y FP32 FP16 BF16 INT32 INT64
ReduceLogSum: Y FP32 FP16 BF16 INT32 INT64
ReduceLogSumExp: Y FP32 FP16 BF16 INT32 INT64
ReduceMax: Y FP32 FP16 BF16 INT32 INT64
ReduceMean: Y FP32 FP16 BF16 INT32 INT64
ReduceMin: Y FP32 FP16 BF16 INT32 INT64
ReduceProd: Y FP32 FP16 BF16 INT32 INT64
ReduceSum: Y FP32 FP16 BF16 INT32 INT64
ReduceSumSquare: Y FP32 FP16 BF16 INT32 INT64
RegexFullMatch: N
Relu: Y FP32 FP16 BF16 INT32 INT64
Reshape: Y FP32 FP16 BF16 INT32 INT64 BOOL
Resize: Y FP32 FP16 BF16
ReverseSequence: Y FP32 FP16 BF16 INT32 INT64 BOOL
RNN: Y FP32 FP16 BF16
RoiAlign: Y FP32 FP16
Round: Y FP32 FP16 BF16
STFT: N
ScaledTanh: Y FP32 FP16 BF16
Scan: Y FP32 FP16 BF16
Scatter: Y FP32 FP16 BF16 INT32 INT64
ScatterElements: Y FP32 FP16 BF16 INT32 INT64
ScatterND: Y FP32 FP16 BF16 INT32 INT64
Selu: Y FP32 FP16 BF16
SequenceAt: N
SequenceConstruct: N
SequenceEmpty: N
SequenceErase: N
SequenceInsert: N
SequenceLength: N
SequenceMap: N
Shape: Y FP32 FP16 BF16 INT32 INT64 BOOL
Shrink: Y FP32 FP16 BF16 INT32 INT64
Sigmoid: Y FP32 FP16 BF16
Sign: Y FP32 FP16 BF16 INT32 INT64
Sin: Y FP32 FP16 BF16
Sinh: Y FP32 FP16 BF16
Size: Y FP32 FP16 BF16 INT32 INT64 BOOL
Slice: Y FP32 FP16 BF16 INT32 INT64 BOOL
Softmax: Y FP32 FP16 BF16
SoftmaxCrossEntropyLoss: N
Softplus: Y FP32 FP16 BF16
Softsign: Y FP32 FP16 BF16
SpaceToDepth: Y FP32 FP16 BF16 INT32 INT64
Split: Y FP32 FP16 BF16 INT32 INT64 BOOL
SplitToSequence: N
Sqrt: Y FP32 FP16 BF16
Squeeze: Y FP32 FP16 BF16 INT32 INT64 BOOL
StringConcat: N
StringNormalizer: N
StringSplit: N
Sub: Y FP32 FP16 BF16 INT32 INT64
Sum: Y FP32 FP16 BF16 INT32 INT64
Tan: Y FP32 FP16 BF16
Tanh: Y FP32 FP16 BF16
TfIdfVectorizer: N
ThresholdedRelu: Y FP32 FP16 BF16
Tile: Y FP32 FP16 BF16 INT32 INT64 BOOL
TopK: Y FP32 FP16 BF16 INT32 INT64
Transpose: Y FP32 FP16 BF16 INT32 INT64 BOOL
Trilu: Y FP32 FP16 BF16 INT32 INT64 BOOL
Unique: N
Unsqueeze: Y FP32 FP16 BF16 INT32 INT64 BOOL
Upsample: Y FP32 FP16 BF16
Where: Y FP32 FP16 BF16 INT32 INT64 BOOL
Xor: Y BOOL
"""


def _parse(text: str) -> dict[str, tuple[str, ...] | None]:
    ops: dict[str, tuple[str, ...] | None] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        flag, *types = rest.split()
        ops[name.strip()] = tuple(types) if flag == "Y" else None
    return ops


# Where the matrix understates its own importer (checked in onnxOpImporters.cpp at the same commit):
# Clip on INT32/INT64 is lowered to elementwise max/min ("For INT32 and multi-input clips, use
# elementwise operators instead"), and the step graphs clamp int64 values with it.
IMPORTER_CORRECTIONS = {"Clip": ("INT32", "INT64")}

# operator -> accepted data-input types, or None when TensorRT's parser does not support it
OPERATORS: dict[str, tuple[str, ...] | None] = _parse(_MATRIX)
for _op, _extra in IMPORTER_CORRECTIONS.items():
    OPERATORS[_op] = tuple(OPERATORS[_op] or ()) + _extra

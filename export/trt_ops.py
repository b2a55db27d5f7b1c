"""What TensorRT's ONNX parser accepts: the table the static compatibility check reads.

Source: onnx/onnx-tensorrt `docs/operators.md` for TensorRT 10.15 ("supports operators in the
inclusive range of opset 9 to opset 24"; data types FLOAT32, FLOAT16, BFLOAT16, INT32, INT64,
BOOL natively, DOUBLE only by casting down, INT8/INT4/FP8/FP4 only as quantized types, UINT8 only
as network input/output). Transcribed by hand (op names, element types, and the restrictions
the MoE graphs can hit); restrictions are enforced by check.py as rules, the rest is text.
Update TRT_VERSION and the rows together when moving to a newer TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass

TRT_VERSION = "10.15"
TRT_SOURCE = "onnx/onnx-tensorrt docs/operators.md (TensorRT 10.15)"
OPSET_RANGE = (9, 24)

F = ("FLOAT", "FLOAT16", "BFLOAT16")
I = ("INT32", "INT64")  # noqa: E741  (integer element types)
B = ("BOOL",)
FI = F + I
FIB = F + I + B

# element types a TensorRT network can hold (DOUBLE is cast down with clamping: flagged)
NETWORK_DTYPES = frozenset(FIB + ("UINT8", "INT8", "FLOAT8E4M3FN", "INT4", "FLOAT4E2M1"))


@dataclass(frozen=True)
class TrtOp:
    types: tuple[str, ...]
    restriction: str = ""


def _ops(names: str, types: tuple[str, ...], restriction: str = "") -> dict[str, TrtOp]:
    return {name: TrtOp(types, restriction) for name in names.split()}


# the supported ops (default ONNX domain); element types as in the source table
SUPPORTED: dict[str, TrtOp] = {
    **_ops("Abs Add Div Mul Sub Sum Max Min Neg Sign Mod Equal Greater GreaterOrEqual Less LessOrEqual", FI),
    **_ops("Relu Pow ArgMax ArgMin Range Shrink IsNaN DepthToSpace SpaceToDepth Gelu Mean", FI),
    **_ops("And Or Xor Not", B),
    **_ops(
        "Acos Acosh Asin Asinh Atan Atanh Cos Cosh Sin Sinh Tan Tanh Ceil Floor Round Erf Exp Log Sqrt Reciprocal "
        "Sigmoid HardSigmoid HardSwish Softplus Softsign Elu Selu Celu LeakyRelu PRelu ThresholdedRelu ScaledTanh "
        "ParametricSoftplus Softmax LogSoftmax MatMul Gemm Einsum BatchNormalization InstanceNormalization "
        "GroupNormalization LayerNormalization RMSNormalization LpNormalization MeanVarianceNormalization LRN Conv "
        "ConvTranspose GlobalAveragePool GlobalLpPool GlobalMaxPool ImageScaler Clip Dropout IsInf Upsample "
        "QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike GRU LSTM RNN Scan Attention "
        "RotaryEmbedding Resize AveragePool MaxPool LpPool GridSample RoiAlign Mish",
        F,
    ),
    **_ops(
        "Cast CastLike Concat Expand Flatten Gather GatherElements GatherND Identity If Loop Reshape ReverseSequence "
        "Shape Size Slice Split Tile Transpose Trilu Where EyeLike ConstantOfShape",
        FIB,
    ),
    **_ops("Squeeze Unsqueeze", FIB, "axes must be resolvable to a constant"),
    **_ops("Constant", FIB, "sparse_value / value_string(s) unsupported"),
    **_ops("OneHot", FIB, "depth must be a build-time constant"),
    **_ops("CumSum", F, "axis must be a build-time constant"),
    **_ops("TopK", FI, "sorted must be 1; K must be an initializer and < 3840"),
    **_ops("NonZero", ("FLOAT", "FLOAT16"), "data-dependent output shape"),
    **_ops("NonMaxSuppression", ("FLOAT", "FLOAT16")),
    **_ops("Scatter ScatterElements", FI),
    **_ops("ScatterND", FI, "reduction other than 'none' is not supported"),
    **_ops("TensorScatter", F + ("INT32",)),
    **_ops("DequantizeLinear", ("INT8", "FLOAT8E4M3FN", "INT4", "FLOAT4E2M1"), "x_zero_point must be zero"),
    **_ops(
        "ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum "
        "ReduceSumSquare",
        FI,
        "axes must be an initializer",
    ),
}

# listed as not supported ("N") in the source table
_UNSUPPORTED_NAMES = (
    "AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad Compress "
    "ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool MaxUnpool "
    "MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement OptionalHasElement "
    "QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty SequenceErase "
    "SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringConcat "
    "StringNormalizer StringSplit TfIdfVectorizer Unique"
)
UNSUPPORTED: frozenset[str] = frozenset(_UNSUPPORTED_NAMES.split())

# ops TensorRT parses but whose output shape depends on the data: the portable contract forbids them
# (an engine's shapes must follow from the input shapes alone, the property the MoE graph keeps)
DATA_DEPENDENT_SHAPE_OPS: frozenset[str] = frozenset({"NonZero", "Unique", "Compress", "NonMaxSuppression"})

# scatter ops whose `reduction` attribute must stay 'none' (TensorRT rejects ScatterND reductions;
# the portable contract forbids scatter reductions altogether, since their order is unspecified)
SCATTER_OPS: frozenset[str] = frozenset({"ScatterND", "ScatterElements"})

TOPK_MAX_K = 3840

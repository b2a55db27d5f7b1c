"""Quantised expert weights: formats, quantisers and dequantisers (pure torch).

moebench.quant.formats  the formats and what their weights cost in bytes
moebench.quant.fp8      fp8-block128 (DeepSeek-V3) and its per-token-group activation quantisation
moebench.quant.mxfp4    mxfp4 (OCP MX, gpt-oss's layout)
moebench.quant.intq     int4 / int8 weight-only, group-wise, symmetric or asymmetric (QMoE's layout)
moebench.quant.experts  QuantizedTensor, QuantizedExperts, quantize_experts
"""

from moebench.quant.experts import QuantizedExperts, QuantizedTensor, quantize_experts, quantize_tensor
from moebench.quant.formats import QUANT_FORMATS, QuantFormat, get_format, int_format

__all__ = [
    "QUANT_FORMATS",
    "QuantFormat",
    "QuantizedExperts",
    "QuantizedTensor",
    "get_format",
    "int_format",
    "quantize_experts",
    "quantize_tensor",
]

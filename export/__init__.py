"""Export of the MoE layer for deployment: ONNX (portable graph, ONNX Runtime fused op), ONNX Runtime
and TensorRT runners, and the deployment benchmark.

Modules (onnx / onnxruntime / tensorrt are imported by the modules that need them, not here):
  features       which spec options each lowering expresses (pure Python: the registrations read it)
  graph_common   dtype maps, initializers, metadata shared by the lowerings
  routing_graph  the router (every RouterSpec option) in standard ops, fp32, shared by both flavours
  ffn_graph      N expert FFNs densely in standard ops: portable's routed experts, both flavours' shared ones
  portable       standard-ops graph (TensorRT-parsable), all experts computed densely
  ort_fused      ONNX Runtime's com.microsoft.MoE contrib op + ordinary nodes for what it lacks
  onnx_io        save / load with external data above protobuf's 2 GB limit
  check          onnx.checker + the static TensorRT-compatibility check
  trt_ops        the op / dtype / attribute table of TensorRT's ONNX parser the check uses
  exporter       one entry point: weights -> checked .onnx (+ .engine) on disk
  file_parity    parity of an exported model on fresh and routing-steered inputs
  ort_runner     run an exported model with ONNX Runtime on torch tensors (CPU or CUDA)
  tensorrt_engine  build and run a TensorRT engine (needs `tensorrt` and a GPU)
  deploy_bench   parity + timing rows for the deployment comparison
  gpu_deploy_run script for a GPU session (mixtral / qwen3 on ORT CUDA)
"""

"""ONNX Runtime sessions made one way: the model's runner (``models.runtime.OnnxRunner``) and the torch-free
query path (``retrieval.query_graph``) run the same graph with the same settings, hence the same outputs."""

from __future__ import annotations


def onnx_session(model_bytes: bytes, threads: int | None = None, spin: bool = False):
    """A CPU ``InferenceSession`` of an exported graph. ``threads``: intra-op threads (default: ONNX Runtime's,
    one per core); without ``spin`` idle threads sleep instead of spinning, leaving the cores to the threads
    that decode images."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])

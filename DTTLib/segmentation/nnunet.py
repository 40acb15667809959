"""nnU-Net v2 volumetric inference on an :class:`ImageVolume`, in memory, GPU or CPU.

Runs nnunetv2's own ``nnUNetPredictor`` (its preprocessing — crop, normalisation,
resampling to the plans' spacing —, Gaussian-weighted sliding window with ``tile_step_size``
overlap and optional test-time mirroring, and its resampling back), fed from memory: no
temporary files and no nnUNet_raw/nnUNet_preprocessed/nnUNet_results variables.

Axes. nnU-Net takes arrays as SimpleITK reads them, (z, y, x) = our (k, j, i), with the
spacing in the same order — so ``ImageVolume.spacing`` (i, j, k) is reversed. Models trained
with ``NibabelIOWithReorient`` saw volumes reoriented to the closest RAS axes; the same
reorientation is applied here and undone on the output.

Device. GPU when the hardware profile gives segmentation a GPU, it has enough free memory and
no other phase of the model manager holds it; otherwise the CPU, with a note saying it is
slower. The lesion probability map (sum over lesion labels) is kept on the image grid so box
prompts (MedSAM) can refine the proposals made from it (see :mod:`.nnunet_proposals`).

Checkpoints are unpickled with ``weights_only=True`` (numpy scalars allowed); a checkpoint that
needs full unpickling is refused unless ``trust_checkpoint`` — a model folder is code you run.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.errors import InputError, MissingDependencyError
from DTTLib.imaging.volume import ImageVolume
from DTTLib.segmentation.nnunet_model import NnUNetModelFolder, inspect_model_folder, resolve_model

NAME = "nnunet"
GIB = 1024**3
CPU_NOTE = ("nnU-Net runs on the CPU ({why}): much slower than on a GPU — a full-size model can take hours "
            "per CT on a few cores (docs/PERFORMANCE.md)")


@dataclass(frozen=True)
class NnUNetSettings:
    """Inference knobs. ``tile_step_size`` 0.5 = tiles overlap by half (nnU-Net's default)."""

    tile_step_size: float = 0.5
    use_mirroring: bool = True
    use_gaussian: bool = True
    device: str | None = None           # None: chosen from the hardware profile
    threads: int | None = None          # CPU threads (default: the cores this process may use)
    folds: tuple[str, ...] | None = None
    checkpoint_name: str = "checkpoint_final.pth"
    min_free_vram_gb: float = 4.0       # a full-size 3d_fullres net needs a few GB for one patch
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.tile_step_size <= 1.0:
            raise InputError(f"tile_step_size {self.tile_step_size} is outside (0, 1]",
                             "use 0.5 (half-overlapping tiles, nnU-Net's default) or up to 1 (no overlap)")


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    note: str = ""                      # shown to the user when not the GPU


@dataclass
class NnUNetPrediction:
    """nnU-Net's output on the input image's grid."""

    labels: np.ndarray                  # (k, j, i) nnU-Net label values
    probabilities: np.ndarray           # float32 (k, j, i): probability of any lesion label, in [0, 1]
    lesion_labels: tuple[int, ...]
    label_names: dict[int, str]
    device: str
    note: str
    tiles: int
    cancelled: bool
    timings: dict[str, float] = field(default_factory=dict)


def _import_nnunet() -> Any:
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("nnU-Net needs PyTorch, which is not installed",
                                     "in 3D Slicer install the PyTorch extension; elsewhere install torch") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from nnunetv2.inference import predict_from_raw_data  # noqa: PLC0415
    except ImportError as error:
        raise MissingDependencyError(f"the 'nnunet' feature needs nnunetv2 ({error})",
                                     "pip install 'DigitalTwinTumor[nnunet]' (or 'nnunetv2>=2.5'); in 3D Slicer "
                                     "accept the install prompt of DTT Segmentation") from None
    return torch, predict_from_raw_data


def choose_device(requested: str | None = None, manager: Any = None, min_free_gb: float = 4.0,
                  profile: str | None = None) -> DeviceChoice:
    """GPU if the profile gives segmentation one, it is free enough and no other phase holds it."""
    from DTTLib.models.memory import cuda_available, free_vram_bytes  # noqa: PLC0415

    if requested:
        if requested.startswith("cuda") and not cuda_available():
            raise InputError(f"device '{requested}' requested but no CUDA GPU is available", "use --device cpu")
        return DeviceChoice(requested, CPU_NOTE.format(why="as requested") if requested == "cpu" else "")
    from DTTLib.hardware import choose_profile, detect_hardware  # noqa: PLC0415

    info = detect_hardware()
    settings = choose_profile(info, profile).settings.get("segmentation", {})
    if settings.get("device") != "cuda" or not info.gpu_available:
        return DeviceChoice("cpu", CPU_NOTE.format(why="no usable GPU" if not info.gpu_available
                                                   else "the hardware profile keeps segmentation on the CPU"))
    if manager is not None:
        holders = [phase for phase, loaded in getattr(manager, "resident", {}).items()
                   if phase != "segmentation" and getattr(loaded.plan, "device", "") == "cuda"]
        if holders:
            return DeviceChoice("cpu", CPU_NOTE.format(why=f"the GPU holds the {holders[0]} model"))
    free = free_vram_bytes()
    if free is not None and free[0] < min_free_gb * GIB:
        return DeviceChoice("cpu", CPU_NOTE.format(
            why=f"only {free[0] / GIB:.1f} GB of GPU memory free, {min_free_gb:g} GB wanted"))
    return DeviceChoice("cuda")


# -- axes ----------------------------------------------------------------------------------
def _ras_orientation(image: ImageVolume) -> np.ndarray:
    from nibabel.orientations import io_orientation  # noqa: PLC0415

    return io_orientation(image.ijk_to_ras())


def to_nnunet(image: ImageVolume, reader: str) -> tuple[np.ndarray, list[float]]:
    """(1, z, y, x) float32 array and its (z, y, x) spacing, as the model's reader would give."""
    array = np.asarray(image.array, dtype=np.float32)
    spacing_ijk = np.asarray(image.spacing, dtype=float)
    if reader == "NibabelIOWithReorient":
        from nibabel.orientations import apply_orientation  # noqa: PLC0415

        ornt = _ras_orientation(image)
        xyz = apply_orientation(array.transpose(2, 1, 0), ornt)
        spacing_xyz = np.empty(3)
        spacing_xyz[ornt[:, 0].astype(int)] = spacing_ijk
        return np.ascontiguousarray(xyz.transpose(2, 1, 0))[None], [float(s) for s in spacing_xyz[::-1]]
    return array[None], [float(s) for s in spacing_ijk[::-1]]


def from_nnunet(volume_zyx: np.ndarray, image: ImageVolume, reader: str) -> np.ndarray:
    """Undo :func:`to_nnunet` for one (z, y, x) output array → (k, j, i) on the image grid."""
    if reader == "NibabelIOWithReorient":
        from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform  # noqa: PLC0415

        back = ornt_transform(axcodes2ornt(("R", "A", "S")), _ras_orientation(image))
        return np.ascontiguousarray(apply_orientation(volume_zyx.transpose(2, 1, 0), back).transpose(2, 1, 0))
    return volume_zyx


# -- checkpoint ----------------------------------------------------------------------------
def load_checkpoint(path: Path, trust: bool = False) -> dict[str, Any]:
    import torch  # noqa: PLC0415

    allowed: list[Any] = [np.dtype, np.float64, np.float32, np.int64, np.int32, np.bool_]
    core = getattr(np, "_core", None) or getattr(np, "core", None)  # numpy 2 renamed numpy.core
    if core is not None and hasattr(core, "multiarray"):
        allowed.append(core.multiarray.scalar)
    allowed += [getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType",
                                                "BoolDType") if hasattr(getattr(np, "dtypes", None), n)]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - decide below whether to retry or refuse
        if not trust:
            first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            raise InputError(f"the checkpoint {path} holds more than weights and was not loaded ({first})",
                             "load it only if you trust its source: trust_checkpoint=True "
                             "(command line: --trust-model)") from None
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise InputError(f"{path} is not an nnU-Net v2 checkpoint (no network_weights)",
                         "point at a folder trained with nnunetv2")
    return checkpoint


def _trainer_class(name: str) -> tuple[Any, str]:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: PLC0415

    if name == "nnUNetTrainer":
        return nnUNetTrainer, ""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name  # noqa: PLC0415

            found = recursive_find_trainer_class_by_name(name)
    except Exception:  # noqa: BLE001 - unknown trainer: its network is still the plans' network
        found = None
    if found is None:
        return nnUNetTrainer, f"trainer '{name}' is not installed: network built from the plans"
    return found, ""


class _Predictor:
    """Factory for an nnUNetPredictor subclass that reports tiles and can be cancelled."""

    @staticmethod
    def make(base: type, settings: NnUNetSettings, device: Any) -> Any:
        class Predictor(base):  # type: ignore[misc, valid-type]
            progress: Callable[[int, int], None] | None = None
            should_cancel: Callable[[], bool] | None = None
            done = 0
            total = 0
            cancelled = False

            def _internal_get_sliding_window_slicers(self, image_size: Any) -> Any:
                slicers = super()._internal_get_sliding_window_slicers(image_size)
                self.total = len(slicers) * len(self.list_of_parameters)
                return slicers

            def _internal_maybe_mirror_and_predict(self, x: Any) -> Any:
                import torch  # noqa: PLC0415

                if not self.cancelled and self.should_cancel is not None and self.should_cancel():
                    self.cancelled = True
                if self.cancelled:  # finish the loop cheaply: nnU-Net's worker thread ends cleanly
                    heads = self.label_manager.num_segmentation_heads
                    return torch.zeros((x.shape[0], heads, *x.shape[2:]), device=x.device, dtype=x.dtype)
                result = super()._internal_maybe_mirror_and_predict(x)
                self.done += 1
                if self.progress is not None:
                    self.progress(self.done, max(self.total, self.done))
                return result

        return Predictor(tile_step_size=settings.tile_step_size, use_gaussian=settings.use_gaussian,
                         use_mirroring=settings.use_mirroring,
                         perform_everything_on_device=device.type == "cuda", device=device,
                         verbose=False, verbose_preprocessing=False, allow_tqdm=False)


class NnUNetSegmenter:
    """A trained nnU-Net model, loaded once; :meth:`predict` segments whole volumes."""

    name = NAME

    def __init__(self, model: str | Path | NnUNetModelFolder, settings: NnUNetSettings | None = None,
                 manager: Any = None) -> None:
        self.settings = settings or NnUNetSettings()
        torch, module = _import_nnunet()
        self._torch = torch
        if isinstance(model, NnUNetModelFolder):
            folder = model
        elif isinstance(model, Path) or Path(str(model)).expanduser().is_dir():
            folder = inspect_model_folder(model, self.settings.folds, self.settings.checkpoint_name)
        else:
            folder = resolve_model(str(model))
        if self.settings.folds is not None or self.settings.checkpoint_name != folder.checkpoint_name:
            # re-checked for the chosen folds/checkpoint; the catalog's lesion labels stay
            folder = replace(inspect_model_folder(folder.path, self.settings.folds, self.settings.checkpoint_name,
                                                  folder.model_id), lesion_labels=folder.lesion_labels)
        self.model = folder
        choice = choose_device(self.settings.device, manager, self.settings.min_free_vram_gb)
        self.device, self.note = choice.device, choice.note
        if self.device == "cpu":
            from DTTLib.segmentation.litemedsam import default_thread_count  # noqa: PLC0415

            torch.set_num_threads(self.settings.threads or default_thread_count())
        started = time.perf_counter()
        self.notes: list[str] = []
        self.predictor = self._load(module)
        self.load_s = time.perf_counter() - started

    def _load(self, module: Any) -> Any:
        import json  # noqa: PLC0415

        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels  # noqa: PLC0415
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # noqa: PLC0415

        folder = self.model
        if len(folder.channel_names) != 1:
            raise InputError(f"the model needs {len(folder.channel_names)} input channels ({folder.modality})",
                             "only single-channel models (one scan in, e.g. CT) are supported")
        dataset_json = json.loads((folder.path / "dataset.json").read_text(encoding="utf-8"))
        plans_manager = PlansManager(json.loads((folder.path / "plans.json").read_text(encoding="utf-8")))
        parameters, first = [], None
        for fold in folder.folds:
            checkpoint = load_checkpoint(folder.path / f"fold_{fold}" / folder.checkpoint_name,
                                         self.settings.trust_checkpoint)
            first = first or checkpoint
            parameters.append(checkpoint["network_weights"])
        configuration = first.get("init_args", {}).get("configuration") or _only(folder.configurations)
        if configuration not in folder.configurations:
            raise InputError(f"the checkpoint was trained with configuration '{configuration}', which "
                             f"plans.json lacks ({', '.join(folder.configurations)})",
                             "copy the plans.json that belongs to this model")
        configuration_manager = plans_manager.get_configuration(configuration)
        if len(configuration_manager.patch_size) != 3:
            raise InputError(f"'{folder.path.name}' is a 2-D nnU-Net model ({configuration})",
                             "use a 3d_fullres (or 3d_lowres) model for volumetric segmentation")
        label_manager = plans_manager.get_label_manager(dataset_json)
        trainer, note = _trainer_class(str(first.get("trainer_name", "nnUNetTrainer")))
        if note:
            self.notes.append(note)
        network = trainer.build_network_architecture(
            plans_manager, configuration_manager,
            determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
            label_manager.num_segmentation_heads, enable_deep_supervision=False)
        try:
            network.load_state_dict(parameters[0])
        except RuntimeError as error:
            raise InputError(f"the weights in '{folder.path}' do not fit the network its plans.json describes "
                             f"({str(error).splitlines()[0][:120]})",
                             "copy plans.json and the fold folders from the same training run") from None
        device = self._torch.device(self.device)
        mirror_axes = first.get("inference_allowed_mirroring_axes")
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints notes about the device
            predictor = _Predictor.make(module.nnUNetPredictor, self.settings, device)
            predictor.manual_initialization(network, plans_manager, configuration_manager, parameters,
                                            dataset_json, str(first.get("trainer_name", "nnUNetTrainer")),
                                            tuple(mirror_axes) if mirror_axes is not None else None)
        self.configuration = configuration
        self.patch_size = tuple(int(p) for p in configuration_manager.patch_size)
        self.target_spacing = tuple(float(s) for s in configuration_manager.spacing)
        self.label_names = {int(v): str(k) for k, v in folder.labels.items() if not isinstance(v, list)}
        return predictor

    def predict(self, image: ImageVolume, progress: Callable[[int, int], None] | None = None,
                should_cancel: Callable[[], bool] | None = None) -> NnUNetPrediction:
        """Segment the whole volume; ``progress(done, total)`` counts network tiles."""
        image.validate()
        reader = self.model.image_reader_writer
        started = time.perf_counter()
        data, spacing_zyx = to_nnunet(image, reader)
        predictor = self.predictor
        predictor.progress, predictor.should_cancel = progress, should_cancel
        predictor.done = predictor.total = 0
        predictor.cancelled = False
        with contextlib.redirect_stdout(io.StringIO()):
            labels, probabilities = predictor.predict_single_npy_array(
                data, {"spacing": spacing_zyx}, None, None, True)
        inferred = time.perf_counter()
        lesion = self.model.lesion_labels
        lesion_probability = np.clip(np.sum(np.asarray(probabilities)[list(lesion)], axis=0, dtype=np.float32),
                                     0.0, 1.0)
        labels = np.asarray(labels)
        if predictor.cancelled:
            labels = np.zeros_like(labels)
            lesion_probability = np.zeros_like(lesion_probability)
        labels = from_nnunet(labels, image, reader)
        lesion_probability = from_nnunet(lesion_probability, image, reader)
        if labels.shape != image.array.shape:  # would be an nnU-Net axis mix-up: never hand it on
            raise InputError(f"nnU-Net returned shape {labels.shape} for an image of {image.array.shape}",
                             "report this with the model's plans.json")
        return NnUNetPrediction(
            labels=labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.int32, copy=False),
            probabilities=lesion_probability.astype(np.float32, copy=False), lesion_labels=lesion,
            label_names=self.label_names, device=self.device, note=self.note, tiles=predictor.total,
            cancelled=predictor.cancelled,
            timings={"predict_s": inferred - started, "total_s": time.perf_counter() - started})


def _only(configurations: tuple[str, ...]) -> str:
    three_d = [c for c in configurations if c.startswith("3d")]
    if len(three_d) == 1:
        return three_d[0]
    raise InputError("the checkpoint does not say which configuration it was trained with",
                     f"keep only the trained configuration in plans.json ({', '.join(configurations)})")


__all__ = ["CPU_NOTE", "DeviceChoice", "NnUNetPrediction", "NnUNetSegmenter", "NnUNetSettings",
           "choose_device", "from_nnunet", "load_checkpoint", "to_nnunet"]

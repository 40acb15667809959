"""The model manager: load by phase, one resident phase at a time, explicit unload, OOM fallbacks.

Phases run in the order segmentation → embeddings → narrative. GPU memory is only ever
held by one of them: loading a phase unloads the others (``del``, ``gc.collect()``,
``torch.cuda.empty_cache()``). On an out-of-memory error the manager tries, in order, a
smaller batch, 4-bit weights (only where a GPU and bitsandbytes exist), then CPU offload
through accelerate, and otherwise raises a :class:`ResourceError` that says what to do —
never a crash that loses the user's scene.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from DTTLib.errors import InputError, ResourceError
from DTTLib.hardware.detect import HardwareInfo
from DTTLib.models.cache import ModelStore, Progress
from DTTLib.models.catalog import PHASES
from DTTLib.models.memory import free_vram_bytes, is_out_of_memory, release_memory
from DTTLib.models.precision import LoadPlan, check_plan, four_bit_possible, plan_for

log = logging.getLogger(__name__)
T = TypeVar("T")
Loader = Callable[[Path, LoadPlan], tuple[Any, Any]]


@dataclass
class LoadedModel:
    phase: str
    model_id: str
    path: Path
    model: Any
    processor: Any
    plan: LoadPlan
    notes: list[str] = field(default_factory=list)


class ModelManager:
    """Loads, tracks and unloads models by phase. ``settings`` are the profile's per-phase
    settings (``ProfileDecision.settings``); ``info`` the hardware facts."""

    def __init__(self, info: HardwareInfo, settings: dict[str, dict[str, Any]],
                 store: ModelStore | None = None, loaders: dict[str, Loader] | None = None,
                 bnb_installed: bool | None = None) -> None:
        self.info = info
        self.settings = settings
        self.store = store or ModelStore()
        self._loaders = loaders
        self.bnb_installed = bnb_installed
        self.resident: dict[str, LoadedModel] = {}
        #: what happened, in plain words (fallbacks, unloads) — shown to the user.
        self.events: list[str] = []

    @classmethod
    def for_this_machine(cls, profile: str | None = None, **kwargs: Any) -> ModelManager:
        from DTTLib.hardware import choose_profile, detect_hardware  # noqa: PLC0415

        info = detect_hardware()
        return cls(info, choose_profile(info, profile).settings, **kwargs)

    def _note(self, message: str) -> None:
        self.events.append(message)
        log.info(message)

    def plan(self, phase: str) -> LoadPlan:
        if phase not in PHASES:
            raise InputError(f"Unknown phase '{phase}'", f"Use one of {', '.join(PHASES)}.")
        return plan_for(self.settings.get(phase, {}), self.info, self.bnb_installed)

    def _loader(self, phase: str) -> Loader:
        if self._loaders and phase in self._loaders:
            return self._loaders[phase]
        from DTTLib.models.loaders import DEFAULT_LOADERS  # noqa: PLC0415

        return DEFAULT_LOADERS[phase]

    # -- load / unload --------------------------------------------------------------------
    def load(self, phase: str, model: str, plan: LoadPlan | None = None,
             allow_download: bool = True, progress: Progress | None = None) -> LoadedModel:
        """Load ``model`` (catalog id, hub id or folder) for ``phase``; other phases are unloaded."""
        plan = plan or self.plan(phase)
        check_plan(plan, self.info, self.bnb_installed)
        current = self.resident.get(phase)
        if current is not None and current.model_id == Path(model).name and current.plan == plan:
            return current
        for other in [p for p in self.resident if p != phase or current is not None]:
            self.unload(other)
        resolved = self.store.resolve(model, allow_download=allow_download, progress=progress)
        net, processor = self._loader(phase)(resolved.path, plan)
        loaded = LoadedModel(phase, resolved.model_id, resolved.path, net, processor, plan,
                             [*plan.reasons, f"weights from {resolved.how}: {resolved.path}"])
        self.resident[phase] = loaded
        self._note(f"{phase}: loaded '{resolved.model_id}' as {plan.precision} on {plan.device}"
                   + (" with CPU offload" if plan.offloaded else ""))
        return loaded

    def unload(self, phase: str | None = None) -> None:
        """Drop the phase's model (all phases when None) and free its memory."""
        for name in [phase] if phase else list(self.resident):
            loaded = self.resident.pop(name, None)
            if loaded is None:
                continue
            loaded.model = None
            loaded.processor = None
            del loaded
            self._note(f"{name}: unloaded")
        release_memory()

    def free_vram(self) -> tuple[int, int] | None:
        """(free, total) bytes on the GPU via torch.cuda.mem_get_info, None without CUDA."""
        return free_vram_bytes()

    # -- running with fallbacks -----------------------------------------------------------
    def run(self, phase: str, step: Callable[[LoadedModel, int], T], batch_size: int | None = None) -> T:
        """Run ``step(loaded, batch_size)``; on out-of-memory walk the fallback chain."""
        loaded = self.resident.get(phase)
        if loaded is None:
            raise InputError(f"No model loaded for phase '{phase}'", "Load one with manager.load first.")
        batch = int(batch_size or loaded.plan.batch_size or 1)
        while True:
            try:
                return step(loaded, batch)
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_out_of_memory(exc):
                    raise
                release_memory()
                loaded, batch = self._next_fallback(phase, loaded, batch, exc)

    def _next_fallback(self, phase: str, loaded: LoadedModel, batch: int,
                       exc: BaseException) -> tuple[LoadedModel, int]:
        plan = loaded.plan
        if batch > 1:
            self._note(f"{phase}: out of GPU memory at batch {batch}; retrying with batch {batch // 2}")
            return loaded, batch // 2
        ok, why = four_bit_possible(self.info, self.bnb_installed)
        if not plan.quantized and not plan.offloaded and plan.device == "cuda" and ok:
            self._note(f"{phase}: out of GPU memory at batch 1; reloading in 4-bit (NF4)")
            new = plan.with_reason("out of memory: 4-bit NF4", precision="nf4")
            return self._reload(phase, loaded, new), 1
        if plan.device == "cuda" and not plan.offloaded:
            self._note(f"{phase}: out of GPU memory"
                       + ("" if plan.quantized else f" (4-bit not possible: {why})")
                       + "; reloading with CPU offload (slower)")
            precision = "fp16" if plan.quantized else plan.precision
            new = plan.with_reason("out of memory: CPU offload", device_map="auto", precision=precision)
            return self._reload(phase, loaded, new), 1
        self.unload(phase)
        raise ResourceError(
            f"{phase}: not enough memory even at batch 1"
            + (" with CPU offload" if plan.offloaded else "") + f" ({str(exc).splitlines()[0][:120]})",
            "Close other GPU programs, choose a smaller model or the CPU profile "
            "(DTT_PROFILE=cpu_only); your scene is unchanged.") from exc

    def _reload(self, phase: str, loaded: LoadedModel, plan: LoadPlan) -> LoadedModel:
        path = loaded.path
        self.unload(phase)
        return self.load(phase, str(path), plan=plan, allow_download=False)

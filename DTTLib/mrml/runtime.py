"""One MRML scene with its module logics, inside 3D Slicer or headless.

Inside Slicer the application already owns a scene and the module logics: we use them.
Headless (the ``slicer-core`` wheel: command line, tests, the main job) we assemble the
same pieces Slicer's application assembles — a scene, an application logic with colour
logic, and the module logics that register converters and storage (without the
Segmentations logic, segments cannot be converted to labelmaps) — and publish them as
``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()`` so ``slicer.util`` helpers work.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DTTLib.errors import MissingDependencyError

#: Module logics a headless runtime creates: Slicer module name → slicer-core class.
HEADLESS_MODULE_LOGICS: dict[str, str] = {
    "Colors": "vtkSlicerColorLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "Volumes": "vtkSlicerVolumesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Tables": "vtkSlicerTablesLogic",
    "Plots": "vtkSlicerPlotsLogic",
    "Texts": "vtkSlicerTextsLogic",
    "Sequences": "vtkSlicerSequencesLogic",
}


def import_slicer() -> Any:
    """Import ``slicer`` or say how to get it."""
    try:
        import slicer  # noqa: PLC0415 - optional dependency, imported on use
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "the MRML layer needs 3D Slicer or the 'slicer-core' Python wheel",
            "run inside 3D Slicer, or `pip install slicer-core` (see README: make test)",
        ) from exc
    return slicer


@dataclass
class MRMLRuntime:
    """A scene and the module logics that act on it."""

    scene: Any
    logics: dict[str, Any]
    headless: bool
    app_logic: Any = None
    work_dir: Path | None = None
    _io: dict[str, Any] = field(default_factory=dict)

    def logic(self, module: str) -> Any:
        """Module logic by Slicer module name (e.g. ``"Segmentations"``)."""
        try:
            return self.logics[module]
        except KeyError:
            raise MissingDependencyError(
                f"the '{module}' module logic is not available in this runtime",
                f"available: {', '.join(sorted(self.logics))}",
            ) from None

    def ensure_remote_io(self) -> None:
        """Scene bundles (.mrb) are read through the data I/O manager: attach it once."""
        if not self.headless or self._io:
            return
        slicer = import_slicer()
        cache_dir = (self.work_dir or Path(tempfile.mkdtemp(prefix="dtt-")))/"io-cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        remote_io = slicer.vtkMRMLRemoteIOLogic()
        remote_io.SetMRMLScene(self.scene)
        remote_io.GetCacheManager().SetRemoteCacheDirectory(str(cache_dir))
        io_manager_logic = slicer.vtkDataIOManagerLogic()
        io_manager_logic.SetMRMLApplicationLogic(self.app_logic)
        io_manager_logic.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
        remote_io.AddDataIOToScene()
        self._io = {"remote_io": remote_io, "io_manager_logic": io_manager_logic}

    def clear(self) -> None:
        """Remove every user node (like File → Close Scene); singleton nodes stay."""
        self.scene.Clear(False)
        # Slicer re-creates the subject hierarchy on close; headless we do it ourselves.
        import_slicer().vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)


_runtime: MRMLRuntime | None = None


def get_runtime() -> MRMLRuntime:
    """The process-wide runtime: Slicer's own scene when running in Slicer, else headless."""
    global _runtime
    if _runtime is not None:
        return _runtime
    slicer = import_slicer()
    scene = getattr(slicer, "mrmlScene", None)
    modules = getattr(slicer, "modules", None)
    if scene is not None and modules is not None and not getattr(slicer, "_dtt_headless", False):
        _runtime = _attach_to_slicer(slicer)
    else:
        _runtime = _build_headless(slicer)
    return _runtime


def get_scene() -> Any:
    """Shortcut for ``get_runtime().scene``."""
    return get_runtime().scene


def _attach_to_slicer(slicer: Any) -> MRMLRuntime:
    logics: dict[str, Any] = {}
    for name in HEADLESS_MODULE_LOGICS:
        module = getattr(slicer.modules, name.lower(), None)
        if module is not None:
            logics[name] = module.logic()
    return MRMLRuntime(scene=slicer.mrmlScene, logics=logics, headless=False)


def _build_headless(slicer: Any) -> MRMLRuntime:
    work_dir = Path(tempfile.mkdtemp(prefix="dtt-slicer-"))
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    # The colour logic loads default colour files from <home>/<share>/ColorFiles. The wheel
    # ships none; labelmap display nodes ask for "GenericColors.txt", so we supply one.
    color_dir = work_dir / "share" / "ColorFiles"
    color_dir.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("GenericColors.txt"), color_dir / "GenericColors.txt")

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.SetHomeDirectory(str(work_dir))
    app_logic.SetShareDirectory("share")

    logics: dict[str, Any] = {}
    for name, class_name in HEADLESS_MODULE_LOGICS.items():
        logic = getattr(slicer, class_name)()
        if name == "Colors":
            app_logic.SetColorLogic(logic)
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        logics[name] = logic

    # What slicer.util expects to find: the scene and slicer.modules.<name>.logic().
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(**{
        name.lower(): types.SimpleNamespace(logic=(lambda logic=logic: logic), name=name)
        for name, logic in logics.items()
    })
    slicer._dtt_headless = True
    slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    return MRMLRuntime(scene=scene, logics=logics, headless=True,
                       app_logic=app_logic, work_dir=work_dir)

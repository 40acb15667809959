"""Shared pytest fixtures: real shared data, a real headless MRML scene, VTK error counting."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from data_paths import REPO_ROOT, shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "imaging" / "brain1_image.nrrd").exists():
        pytest.fail(f"real test data not found in {path}: set DTT_SHARED_DATA to the shared/data "
                    "folder (CI and developer checkouts have it at ../shared/data)")
    return path


@pytest.fixture
def brain_pair(shared_data: Path, tmp_path: Path) -> dict[str, Path]:
    """Copies of the brain MR pair and labels (the shared folder is read-only)."""
    out = {}
    for name in ("brain1_image", "brain1_label", "brain2_image", "brain2_label"):
        out[name] = Path(shutil.copy(shared_data / "imaging" / f"{name}.nrrd", tmp_path))
    return out


class VTKMessages:
    """Counts what VTK logs: VTK reports errors by printing, not raising."""

    def __init__(self) -> None:
        import slicer  # noqa: PLC0415
        import vtkmodules.vtkCommonCore as core  # noqa: PLC0415

        self.window = slicer.vtkTestingOutputWindow()
        self.window.SetDisplayModeToAlwaysStdErr()
        core.vtkOutputWindow.SetInstance(self.window)

    def reset(self) -> None:
        self.window.ResetNumberOfLoggedMessages()

    @property
    def errors(self) -> int:
        return self.window.GetNumberOfLoggedErrorMessages()

    @property
    def warnings(self) -> int:
        return self.window.GetNumberOfLoggedWarningMessages()


_vtk_messages: VTKMessages | None = None


@pytest.fixture
def mrml(request: pytest.FixtureRequest):
    """The headless runtime with an empty scene; any VTK error or warning fails the test."""
    global _vtk_messages
    from DTTLib.mrml.runtime import get_runtime  # noqa: PLC0415

    runtime = get_runtime()
    if _vtk_messages is None:
        _vtk_messages = VTKMessages()
    runtime.clear()
    _vtk_messages.reset()
    yield runtime
    errors, warnings = _vtk_messages.errors, _vtk_messages.warnings
    runtime.clear()
    if not request.node.get_closest_marker("vtk_messages_expected"):
        assert (errors, warnings) == (0, 0), (
            f"VTK logged {errors} error(s) and {warnings} warning(s) during the test (see stderr)")


@pytest.fixture
def vtk_messages(mrml) -> VTKMessages:
    assert _vtk_messages is not None
    return _vtk_messages


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vtk_messages_expected: the test provokes VTK messages on purpose")
    sys.path.insert(0, str(REPO_ROOT))

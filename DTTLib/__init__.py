"""DigitalTwinTumor shared library.

All real logic of the extension lives here as plain Python. Nothing in this package
imports Qt, CTK or the Slicer application object; MRML access is confined to :mod:`DTTLib.mrml`, which
works inside 3D Slicer and headless on the ``slicer-core`` wheel. Importing the package
is cheap on purpose: sub-packages are imported by whoever needs them.
"""

__version__ = "0.1.0"

# A crash guard, not a feature: see DTTLib/triton_guard.py (two LLVMs in one process).
from DTTLib.triton_guard import install as _install_triton_guard  # noqa: E402

_install_triton_guard()

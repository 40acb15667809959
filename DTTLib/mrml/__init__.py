"""The only place DTTLib touches MRML.

Records (``ImageVolume``, masks, rows, boxes, lines, text) map to Slicer nodes here, and
nowhere else. Works inside 3D Slicer and headless on the ``slicer-core`` wheel; importing
this package does not import ``slicer`` — each function does, on use.
"""

from DTTLib.mrml.runtime import MRMLRuntime, get_runtime, get_scene

__all__ = ["MRMLRuntime", "get_runtime", "get_scene"]

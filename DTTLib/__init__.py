"""DigitalTwinTumor shared library.

All real logic of the extension lives here as plain Python. Nothing in this package
imports Qt, CTK or the Slicer application object; MRML access is confined to :mod:`DTTLib.mrml`, which
works inside 3D Slicer and headless on the ``slicer-core`` wheel. Importing the package
is cheap on purpose: sub-packages are imported by whoever needs them.
"""

__version__ = "0.1.0"

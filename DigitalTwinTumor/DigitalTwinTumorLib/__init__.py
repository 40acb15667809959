"""Digital Twin Tumor's feature parts: each file holds one feature's widget, logic and self-test
methods, mixed into the classes of DigitalTwinTumor.py (one job per file; the work itself is DTTLib's)."""

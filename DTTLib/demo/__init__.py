"""The main job's demo: real public data through the twin, headless."""

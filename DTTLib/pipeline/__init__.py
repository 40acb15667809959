"""The main job: a case folder in, a twin out (scene bundle, JSON, CSV, HTML report)."""

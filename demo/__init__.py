"""`make demo`: the main job end to end on the built-in demo corpus (see demo.run)."""

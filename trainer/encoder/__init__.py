"""The voice encoder's room: its config, data, Ray Train job and loop, evaluation and batch inference."""

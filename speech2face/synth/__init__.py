"""Synthetic media made offline: espeak-ng voices and LFW face frames, for tests and the demo corpus."""

"""The offline demo corpus: real LFW faces that speak with espeak-ng voices, as AVSpeech-format CSVs and mp4s.

Not part of the domain core: the demo and the tests make their media with it. ``python -m demo_corpus``
writes (and with --serve, serves on loopback) a corpus; ``demo_corpus.server`` serves a directory as a
stand-in for YouTube.
"""

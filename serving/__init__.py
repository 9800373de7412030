"""serving (Ray layer): Speech2Face as a Ray Serve application, an HTTP API and one web page.

``python -m serving.app --model M --gallery DATA`` (or ``serve run serving.app:build model=M gallery=DATA``)
serves ``POST /api/predict`` (audio or video in, the predicted face feature and the nearest gallery faces
out), ``GET /api/health``, ``GET /api/info`` and ``GET /``, a page where a person uploads a file or
records from the microphone. Thin over the core: audio decoding, the model and the ranking are the
ones trainer.predict uses.
"""

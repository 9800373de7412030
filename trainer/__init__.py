"""trainer (Ray layer): the voice encoder's and the face decoder's training and evaluation jobs.

Commands, one module each: ``train``, ``evaluate``, ``predict``, ``train_decoder``, ``evaluate_decoder``
(``python -m trainer.<command>``). Rooms they use: ``encoder/``, ``decoder/`` and ``runtime/`` (what both
share). Loading a trained model needs no Ray and no trainer: ``speech2face.inference.load_model(path)``.
"""

"""trainer: Ray Train training, evaluation and prediction for the Speech2Face voice encoder.

Importing this package does not import Ray: ``trainer.load_model(path)`` loads a trained
model.safetensors with torch and safetensors only.
"""

from trainer.model_io import load_model, read_model

__all__ = ["load_model", "read_model"]

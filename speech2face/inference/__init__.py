"""The inference library, without Ray: load a trained encoder or decoder, embed audio, rank a gallery.

trainer.predict, serving and demo import this; it imports none of them.

    model, meta = read_model("runs/demo/model.safetensors")
    feature = predict_features(model, load_audio("talk.mp4")[None])[0]
    matches = Gallery("demo_output/data", split="test").nearest(feature, top=5)
"""

from speech2face.inference.decoder_file import check_embedder, draw_faces, read_decoder, save_decoder
from speech2face.inference.embedding import embed, predict_features
from speech2face.inference.encoder_file import embedder_of, load_model, read_metadata, read_model, save_model
from speech2face.inference.gallery import Gallery, check_same_embedder, read_face_jpegs, read_rows
from speech2face.inference.retrieval import gallery_indices, recall_metrics, retrieval_ranks

__all__ = [
    "Gallery",
    "check_embedder",
    "check_same_embedder",
    "draw_faces",
    "embed",
    "embedder_of",
    "gallery_indices",
    "load_model",
    "predict_features",
    "read_decoder",
    "read_face_jpegs",
    "read_metadata",
    "read_model",
    "read_rows",
    "recall_metrics",
    "retrieval_ranks",
    "save_decoder",
    "save_model",
]

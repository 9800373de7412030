"""Face embedders: 224x224 face crops -> feature vectors, behind one small interface (``FaceEmbedder``).

``dlib``: dlib's 128-D descriptor with its shipped weights. ``vggface``: the paper's 4096-D VGG-Face fc7
(a PyTorch port of keras-vggface's "vgg16"; the weights are a file the user supplies).
"""

from speech2face.embedders.base import EMBEDDER_NAMES, FaceEmbedder, check_face_batch
from speech2face.embedders.factory import load_vggface, make_embedder

__all__ = ["EMBEDDER_NAMES", "FaceEmbedder", "check_face_batch", "load_vggface", "make_embedder"]

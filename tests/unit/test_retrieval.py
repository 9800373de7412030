"""The retrieval protocol shared by validation and evaluation (speech2face.inference.retrieval)."""

import numpy as np

from speech2face.inference.retrieval import gallery_indices, retrieval_ranks


def test_val_gallery_has_one_face_per_video():

    videos = np.array(["b", "a", "b", "c", "a"])
    clips = np.array(["b2", "a1", "b1", "c1", "a0"])
    gallery_rows, targets = gallery_indices(videos, clips, "ytid")
    assert gallery_rows.tolist() == [4, 2, 3]  # per video (sorted), its smallest clip id
    assert targets.tolist() == [1, 0, 1, 2, 0]
    rows, own = gallery_indices(videos, clips, "clip")
    assert rows.tolist() == own.tolist() == [0, 1, 2, 3, 4]
    faces = np.eye(5, 8) + 0.1
    # a query equal to its video's gallery face ranks it first; one equal to another video's face does not
    queries = faces[gallery_rows[targets]]
    ranks, size = retrieval_ranks(queries, faces, videos, clips, "ytid")
    assert size == 3 and ranks.tolist() == [1, 1, 1, 1, 1]
    ranks, _ = retrieval_ranks(faces[[3, 3, 3, 3, 3]], faces, videos, clips, "ytid")
    assert ranks.tolist() == [2, 2, 2, 1, 2]

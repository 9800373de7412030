"""The face decoder's room: its config, data (faces, features, landmarks), Ray Train job and loop, evaluation."""

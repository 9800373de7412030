"""What the encoder's and the decoder's runs share: the Ray runtime (start_ray, the TorchTrainer), the
common config fields, checkpoints, and the files a run leaves (metrics.csv, TensorBoard)."""

"""Shared pytest fixtures: real servers and media, made at test time."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

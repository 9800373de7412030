"""pipelines (Ray layer)."""

"""tuning (Ray layer)."""

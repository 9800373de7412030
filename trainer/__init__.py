"""trainer (Ray layer)."""

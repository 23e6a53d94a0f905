"""Data layer: manifests (what), sampler (which, in what order), dataset (read one batch)."""

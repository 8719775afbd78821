"""Video backends."""

"""Audio input/output and composition."""

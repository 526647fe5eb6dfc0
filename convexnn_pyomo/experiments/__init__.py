"""Experiments of the paper (section V) and studies."""

"""Consumers of condensed sets: loading, DLB training, continual learning, architecture search."""

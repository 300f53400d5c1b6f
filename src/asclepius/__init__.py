"""Asclepius: clinical language models built on synthetic clinical notes."""

__version__ = "0.1.0"

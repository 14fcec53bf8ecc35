"""The `bayesode` command: a thin layer over the everyday path."""

from .main import main

__all__ = ["main"]

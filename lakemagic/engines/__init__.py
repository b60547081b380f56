"""Engines: the embedded handler in this kernel, or the function in AWS Lambda."""

from .base import DEFAULT_LAKE, Engine, LambdaFigures, Reply

__all__ = ["DEFAULT_LAKE", "Engine", "LambdaFigures", "Reply"]

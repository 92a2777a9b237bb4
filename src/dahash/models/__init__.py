"""Networks: the DAH head placed on backbone features."""

from .head import DAHHead, HeadOutput

__all__ = ["DAHHead", "HeadOutput"]

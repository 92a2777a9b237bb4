"""Networks: the DAH head and the softmax head placed on backbone features."""

from dahash.models.head import ClassifierHead, DAHHead, HeadOutput

__all__ = ["ClassifierHead", "DAHHead", "HeadOutput"]

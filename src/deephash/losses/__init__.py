from .dsh import DSHLoss

__all__ = ["DSHLoss"]

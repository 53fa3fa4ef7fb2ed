from .base import BaseLoss
from .dsh import DSHLoss
from .triplet import TripletRankingLoss

__all__ = ["BaseLoss", "DSHLoss", "TripletRankingLoss"]

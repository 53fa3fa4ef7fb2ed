from .dsh import DSHLoss
from .triplet import TripletRankingLoss

__all__ = ["DSHLoss", "TripletRankingLoss"]

from .base import BaseLoss
from .csq import CSQLoss, hash_centers
from .dpsh import DPSHLoss
from .dsh import DSHLoss
from .greedyhash import GreedyHashLoss
from .hashnet import HashNetLoss
from .triplet import TripletRankingLoss

__all__ = ["BaseLoss", "CSQLoss", "DPSHLoss", "DSHLoss", "GreedyHashLoss", "HashNetLoss", "TripletRankingLoss",
           "hash_centers"]

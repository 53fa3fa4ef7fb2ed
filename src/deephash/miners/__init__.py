from .base import BaseMiner
from .items import ItemsMiner
from .pairs import AllPairsMiner, similarity_matrix
from .triplets import CategoryTripletMiner, TripletMiner, shared_labels

__all__ = ["AllPairsMiner", "BaseMiner", "CategoryTripletMiner", "ItemsMiner", "TripletMiner", "shared_labels",
           "similarity_matrix"]

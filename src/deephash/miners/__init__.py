from .base import BaseMiner
from .pairs import AllPairsMiner, similarity_matrix
from .triplets import CategoryTripletMiner, TripletMiner, shared_labels

__all__ = ["AllPairsMiner", "BaseMiner", "CategoryTripletMiner", "TripletMiner", "shared_labels", "similarity_matrix"]

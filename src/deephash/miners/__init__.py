from .pairs import AllPairsMiner, similarity_matrix

__all__ = ["AllPairsMiner", "similarity_matrix"]

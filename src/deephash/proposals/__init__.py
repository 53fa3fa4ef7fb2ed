"""Object proposals: candidate boxes (x1, y1, x2, y2) in pixel coordinates per image.

Generators (``grid``: multi-scale sliding windows, cheap and content-independent;
``selective``: OpenCV selective search; ``boxes_from_labels``: ground truth) give
scored candidates; ``propose`` keeps the top N after NMS, always with the whole-image
box first, and caches the result on disk keyed by the image's content hash.
"""

from .boxes import clip_boxes, select_top, whole_image_box
from .cache import ProposalCache
from .generators import GENERATORS, GridProposals, SelectiveSearchProposals, boxes_from_labels, make_generator
from .pipeline import pad_proposals, propose, propose_batch

__all__ = ["GENERATORS", "GridProposals", "ProposalCache", "SelectiveSearchProposals", "boxes_from_labels",
           "clip_boxes", "make_generator", "pad_proposals", "propose", "propose_batch", "select_top",
           "whole_image_box"]

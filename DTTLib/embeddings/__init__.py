"""Lesion embeddings: MedSigLIP-448 (1152-d) of lesion-centred crops, or — offline — the
segmentation encoder's features pooled inside the mask. Used for tracking and similar-lesion
search."""

from DTTLib.embeddings.crops import lesion_crop
from DTTLib.embeddings.pooled import cosine_similarity, pooled_embedding
from DTTLib.embeddings.siglip import embed_crops, embedding_dim, image_size

__all__ = ["cosine_similarity", "embed_crops", "embedding_dim", "image_size", "lesion_crop", "pooled_embedding"]

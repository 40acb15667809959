"""Lesion tracking across timepoints: registration, Hungarian matching, identity graph.

Typical use::

    from DTTLib.tracking import TimepointLesions, observation_from_mask, track_timepoints
    graph = track_timepoints([TimepointLesions(0, obs0, scan0), TimepointLesions(56, obs1, scan1)])
    graph.tracks()   # {"L1": [(0, "L1"), (1, "a")], ...}
"""

from DTTLib.tracking.appearance import default_similarity, embedding_cosine, histogram_similarity
from DTTLib.tracking.matching import MatchOptions, PairMatch, match_pair
from DTTLib.tracking.records import Event, IdentityGraph, LesionObservation, Link, Override
from DTTLib.tracking.registration import RegistrationOptions, RegistrationResult, register, warp_mask_to_baseline
from DTTLib.tracking.track import TimepointLesions, observation_from_mask, track_timepoints

__all__ = ["Event", "IdentityGraph", "LesionObservation", "Link", "MatchOptions", "Override", "PairMatch",
           "RegistrationOptions", "RegistrationResult", "TimepointLesions", "default_similarity",
           "embedding_cosine", "histogram_similarity", "match_pair", "observation_from_mask", "register",
           "track_timepoints", "warp_mask_to_baseline"]

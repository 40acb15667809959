"""DTT Segmentation: names its module file and its feature parts (DTTSegmentationLib) share."""

# The .ui's "Edge refinement" combo box items, in order: the rule each stands for.
EDGE_REFINEMENT_RULES = ("auto", "on", "off")
#: Qt settings key of the "Prepare nearby slices while the box is drawn" check box.
PREFETCH_SETTING = "DTTSegmentation/PrepareNearbySlices"
#: how results treat other segments' voxels: "editor" (the Segment Editor's masking), "none" or "all"
OTHER_SEGMENTS_SETTING = "DTTSegmentation/OtherSegments"
#: Milliseconds the box must stay still before its slices are prepared (dragging fires many events).
PREFETCH_DELAY_MS = 600
#: The organ of a lymph node whose organ was left empty (the main module reads it the same way).
LYMPH_NODE_ORGAN = "lymph node"


def edgeRefinementOverride(rule: str):
    """``computeLesion``'s ``refineEdges`` for a rule: "on" True, "off" False, "auto" (or anything
    else) None, which leaves it to the modality's rule in window_presets.json."""
    return {"on": True, "off": False}.get(rule)


def lesionOrgan(organ: str, lymphNode: bool) -> str:
    """The organ a lesion is segmented for (its CT window): as typed, or "lymph node" for a node
    without one; "" when neither is set."""
    organ = (organ or "").strip()
    return organ or (LYMPH_NODE_ORGAN if lymphNode else "")

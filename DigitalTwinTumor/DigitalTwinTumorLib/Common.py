"""Digital Twin Tumor: choices and limits its module file and its feature parts (DigitalTwinTumorLib) share."""

#: RECIST non-target assessments a timepoint can have (DTTLib.response.records.NON_TARGET_VALUES).
NON_TARGET_CHOICES = ("none", "CR", "nonCR_nonPD", "PD", "NE")
#: New lesions at a follow-up: as lesion tracking finds them, or the reader's yes / no.
NEW_LESION_CHOICES = ("tracking", "yes", "no")
#: iRECIST: did a PD non-target grow further since the last visit? Not assessed keeps a non-target
#: iUPD unconfirmed and says so (DTTLib.response.irecist); yes confirms iCPD, no keeps iUPD.
FURTHER_INCREASE_CHOICES = ("not_assessed", "yes", "no")
#: Day of a timepoint added after the last one, and of the default follow-up.
FOLLOW_UP_INTERVAL_DAYS = 56.0
MAX_DAY = 3650.0
# A lesion's organ and nodal status are read from its segment's tags (DTTLib.mrml.lesions ORGAN_TAG /
# NODAL_TAG, written by DTT Segmentation); the lesion organ table overrides them, and a segment
# without them is described by its terminology.

"""HL7 v2 adapter (MLLP listener, ORM/OMI/OMG/ADT intake, ACKs). Not built yet: see the HL7 issue."""

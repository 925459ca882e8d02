"""HL7 v2 adapter: MLLP listener, ORM/OMI/OMG and ADT intake, acknowledgements."""

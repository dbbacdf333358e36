"""Coverage-guided fuzzing of the code that reads what strangers send: the stream parser
(both framings), JIDs, stanza serialization and SASL. See :mod:`fuzz.targets`."""

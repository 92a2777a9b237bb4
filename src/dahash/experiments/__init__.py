"""The paper's experiments over many runs: accuracy and retrieval tables (:mod:`.reproduce`,
:mod:`.retrieval_tables`), label-free model selection (:mod:`.selection`), the digits demo, the feature
analysis (:mod:`.report`, :mod:`.figures`) and the published numbers."""

"""Mechanisms every stage shares: the one parallel map (:mod:`.execution`), progress bars
(:mod:`.progress`) and the settings base (:mod:`.settings`)."""

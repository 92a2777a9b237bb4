"""A run: config -> data -> train -> evaluate -> write (:mod:`.run`); a finished run loaded
(:mod:`.loading`); its data (:mod:`.data`); DAH as a scikit-learn / skada estimator (:mod:`.estimator`)."""

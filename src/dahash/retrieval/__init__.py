"""Search trained codes: build and query an index of images (:mod:`.search`) and serve it over HTTP
(:mod:`.serve`)."""

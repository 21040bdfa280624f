"""The intermediate representation: typed building blocks (`building_blocks`) and the small typed
helpers that tracing and the intrinsics use to build them (`build`)."""

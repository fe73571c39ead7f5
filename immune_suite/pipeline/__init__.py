"""The promotion pipeline: a state machine whose steps and transitions are data (`immune-suite plan`)."""

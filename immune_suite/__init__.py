"""The promotion suite: gates (load, chaos, security) and the pipeline that runs them."""

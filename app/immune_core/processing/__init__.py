"""Running events through the detection engine and committing what it concludes."""

"""The homeostatic controller: the global threat level, raised by detections, decaying to baseline."""

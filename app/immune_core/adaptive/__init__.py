"""The adaptive layer's machinery shared by its cells: antigen features, CLONALG, tolerance, memory."""

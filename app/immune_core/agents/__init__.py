"""The cell population of the detection engine, managed through the API."""

"""Regenerate the JSON Schema files from the models: ``python -m immune_core.events.schemas``."""

from immune_core.events.schemas import write_schemas

for path in write_schemas():
    print(path)

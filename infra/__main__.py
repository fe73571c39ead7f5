"""Pulumi entry point: build the stack from its config and export what the gates and pipeline need."""

import pulumi
from immune_infra.program import deploy

for export_name, export_value in deploy().items():
    pulumi.export(export_name, export_value)

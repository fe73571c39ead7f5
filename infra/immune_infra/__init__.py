"""The Active Immune Core Pulumi program: one ComponentResource per file, wired by `program.deploy`."""

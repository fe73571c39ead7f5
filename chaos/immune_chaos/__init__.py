"""Our Chaos Toolkit extension: probes and actions for the local stack live in `immune_chaos.local`."""

"""Leader election with fencing tokens, and the singleton duties the leader runs."""

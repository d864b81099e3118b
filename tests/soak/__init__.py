"""The chaos soak: a job under every fault at once, with SIGKILLs of the engine, checked by
looking at the clouds themselves."""

"""The end-to-end lane: real worker processes, injected faults, the demo and the bench."""

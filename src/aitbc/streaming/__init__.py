"""Event delivery: the in-process hub that pushes job events to subscribers and wakes waiting claimers."""

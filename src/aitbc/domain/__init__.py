"""Pure rules of the marketplace: jobs, statuses, transitions, matching, plans. Imports nothing of ours."""

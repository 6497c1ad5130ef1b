"""Use cases: submission, miners (register, claim, run, finish), the reaper, events, accounts.

They see store interfaces only."""

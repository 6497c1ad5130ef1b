"""Use cases: submission, dispatch (claim/lease/reaper), events, accounts. They see store interfaces only."""

"""Use cases: submission, miners (register, claim, run, finish), the reaper, events, accounts, results.
They see store interfaces only.

Domain objects become wire models here, never in routes: a service method a route calls returns the protocol
model the route sends (for a download, a `Download` that describes the bytes), so a route makes one call for
its one response. A domain object that several answers show (a job, an event, an account, a key, a balance)
is mapped in one presenter module (`views.py`, `job_presenter.py`, `admin_views.py`); a view only one use case
answers with is built by that use case. Methods that return domain objects serve other services, the CLI's
direct mode and tests.
"""

"""The pure core: deciders for the master (registry + ledger) and the requester's jobs.

No IO, no clock, no randomness: time, ids and random draws arrive in commands.
"""

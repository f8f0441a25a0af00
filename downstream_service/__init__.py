"""A stand-in for a slow dependency (a database, another API) that /fanout and /ready call.

It is async so it is never the bottleneck: thousands of waits cost it nothing, and whatever
the lab measures on /fanout is the calling service, not this one.
"""

"""The API contract both services implement: the payload models and the error shape.

FastAPI and Flask import these same definitions, so the same request to ``/async/X`` and
``/sync/X`` is valid or invalid in the same way and answers with the same JSON shape. It
depends on pydantic alone: anything that speaks the API (a client, the load test) can import
it without pulling in a server.
"""
